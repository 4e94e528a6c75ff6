"""Running the pipeline on this machine: the local runner, what it checks first (locks, inputs, nothing new to
do), its log and ML Metadata record, the shared-store lock, and retention of old runs."""
