"""The colourization task: greyscale 32x32 patches to palette colours (data, cifar, patches, palette:
the data; loop: the trainer; prepare, task: the run)."""
