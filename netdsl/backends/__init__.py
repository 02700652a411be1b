"""What netdsl makes from a concrete graph: a torch module, and the files `netdsl export` writes.

* `torch_module` (+ `torch_build`): the compiled `nn.Module`; `torch_layers`: the modules torch.nn
  lacks (the YOLO head), written so that the Python export copies their source;
* `python_source/`: `export --to python`, one standalone file (`analyse` -> `model` -> `write`);
* `onnx_export`: `export --to onnx` (`onnx_axes`: which sizes may vary, `onnx_dims`: how
  torch.export is told and the model names them, `onnx_check`: onnxruntime against torch);
* `picture`: `export --to dot|svg|png` (`picture_draw`: the dot text, `picture_text`: its labels).
"""
