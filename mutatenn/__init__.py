"""MutateNN: mutation testing and differential testing of image-recognition models on TVM's compiler IR."""

__version__ = "0.1.0"
