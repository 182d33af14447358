"""Annotation tools' exports turned into a described dataset.

Each reader checks an export completely, reading JSON files and image
headers only, and returns an :class:`~pspnet.annotations.export.Export`:
the classes and, per split, the items whose label maps are drawn later,
when :func:`pspnet.annotations.output.write_dataset` writes the dataset
folder (atomically, so a refusal or a failure leaves nothing).

- :mod:`~pspnet.annotations.coco`: COCO instance annotations (polygons,
  compressed and uncompressed RLE), rasterized by pycocotools.
- :mod:`~pspnet.annotations.labelme`: labelme's JSON files (polygons,
  rectangles, circles, masks), drawn as labelme draws them.
- :mod:`~pspnet.annotations.cvat`: CVAT's "Segmentation mask 1.1" export
  (``labelmap.txt``, colour-coded PNGs, ``ImageSets`` splits).
"""
