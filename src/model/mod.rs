//! The model format: safetensors tensors plus string metadata.
