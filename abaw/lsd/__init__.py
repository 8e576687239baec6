"""LSD pipeline steps: ncnn weight conversion, Real-ESRGAN super-resolution, hand detection."""
