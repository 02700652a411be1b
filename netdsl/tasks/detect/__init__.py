"""The detection task for networks ending in `detect`: YOLOv3's loss (loss), inference
post-processing (nms, predict), data and augmentation (data, images, augment, embedded), metrics
and validation, the trainer, and the run (prepare, task, outputs). netdsl.commands.detect uses the
inference half."""
