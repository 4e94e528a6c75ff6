"""Everything under ``<serving_dir>``: layout, labels, decision records, staging and publishing, rollback and
promotion, and the folder's lock; used by the pusher, the model server and the command line."""

from twinflow.core.packages import require_namespace

require_namespace(__name__)
