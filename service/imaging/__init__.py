"""Operations on volumes that keep track of patient space: resampling and reorientation."""
