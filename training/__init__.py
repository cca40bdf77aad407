"""The offline job: data -> teacher -> soft labels -> student -> ONNX -> evaluation -> publish.

Read it top-down as the pipeline runs (training/pipeline.py: the stages and the budget):
  config.py, config_file.py   the typed config, read from a TOML file plus `--set` overrides
  data/                       the interaction log: types, id maps, the split, one loader over the sources
  distributed.py, workdir.py  where the process stands (ranks, device, threads); what stages leave on disk
  fit/                        what every model's fit shares: examples, the loop, losses, the softmax
  teacher/                    our two-tower and its fit, or the user's own teacher imported
  student/                    the MLP student, the teacher's soft labels, distillation, calibration
  trained.py                  the models a publish needs, from the fits or from work_dir
  evaluate/                   full-ranking metrics, every model ranked alike, gates, the report
  export/                     ONNX graphs, parity, item precision, the ANN index, the atomic publish
  warm/                       warm starts: the checkpoints a version carries, id maps merged by raw id
  schedule/                   when and where stages run: the wall-clock budget, the side process
The only package that imports torch (and only inside the modules that train or export).
"""
