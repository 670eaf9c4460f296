"""Custom nnU-Net trainers, found by nnU-Net through ``nnUNet_extTrainer`` (see iusdiff_short)."""
