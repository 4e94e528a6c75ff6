"""The data contracts between stages: Example keys, Transform output keys, what models output."""

# Raw example contract (ImageExampleGen output).
IMAGE_KEY = "image"
LABEL_KEY = "label"
LABEL_NAME_KEY = "label_name"
FILENAME_KEY = "filename"
# Image properties ImageExampleGen records per example, so the drift gate sees shifts in them.
IMAGE_HEIGHT_KEY = "image_height"
IMAGE_WIDTH_KEY = "image_width"
IMAGE_CHANNELS_KEY = "image_channels"
IMAGE_FORMAT_KEY = "image_format"
IMAGE_MEAN_KEY = "image_mean"  # mean intensity in [0, 255] over all channels
IMAGE_PROPERTY_KEYS = (IMAGE_HEIGHT_KEY, IMAGE_WIDTH_KEY, IMAGE_CHANNELS_KEY, IMAGE_FORMAT_KEY, IMAGE_MEAN_KEY)
# Transform output contract: the only features trainers read.
IMAGE_XF_KEY = "image_xf"
LABEL_XF_KEY = "label_xf"
# What every served model outputs, and what TFMA reads (EvalConfig prediction_key).
PROBABILITIES_KEY = "probabilities"
# Every served model's signatures (TF Serving names), their one input each, and their outputs.
SERVING_EXAMPLES_SIGNATURE = "serving_default"  # serialized raw tf.Examples
SERVING_IMAGE_BYTES_SIGNATURE = "serving_image_bytes"  # encoded images
SIGNATURE_INPUTS = {SERVING_EXAMPLES_SIGNATURE: "examples", SERVING_IMAGE_BYTES_SIGNATURE: "image_bytes"}
# Transform-graph vocabulary holding "<label index>:<label name>" lines.
CLASS_VOCAB_NAME = "class_names"
# The key of the training section in TFX custom_config (Transform and every Trainer read it).
TRAINING_CONFIG_KEY = "training"
SERVING_DIR_KEY = "serving_dir"  # a Trainer's custom_config: where --weights served finds the served versions

SPLITS = ("train", "eval", "test")
# What the drift gate writes into its output artifact.
DRIFT_REPORT_FILE = "drift.json"
# What `twinflow prepare-data` leaves at the top of the folder it wrote: part of the data set, not a stray file.
PREPARED_MARKER = ".twinflow-prepared.json"

# The files of a served model folder beside its model.json (the card's ``artifact`` names the model file).
ONNX_FILE = "model.onnx"
TFLITE_FILE = "model.tflite"
TRANSFORM_GRAPH_DIR = "transform_graph"  # a copy of the Transform graph, for formats that cannot hold it inside
