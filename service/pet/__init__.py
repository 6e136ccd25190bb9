"""PET quantification: SUV conversion, lesion measures (SUVmax/mean/peak, MTV, TLG), thresholds."""
