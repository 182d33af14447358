"""What the scripts do, as plain functions over dataclasses of options,
testable without a command line: :mod:`pspnet.apps.demo` (demo.py) and
:mod:`pspnet.apps.evaluate` (eval_semantic_segmentation.py),
:mod:`pspnet.apps.prepare` (prepare_dataset.py). Training's is
:mod:`pspnet.training.run` (train_multi.py); the conversions are
:mod:`pspnet.caffe` (caffe2npz.py) and :mod:`pspnet.onnx_export`
(export_onnx.py). The scripts parse the flags into these options.
"""
