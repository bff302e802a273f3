"""The diffusion core: maths only (torch), no modality, no file I/O, no training loop."""
