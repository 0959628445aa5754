"""User tools (convert_vgg, convert_fst, download_coco) and, under bench/, benchmarks and developer tools."""
