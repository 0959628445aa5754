"""Files in and out: images, weight files, the model registry, downloads and weight converters."""
