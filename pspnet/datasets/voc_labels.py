"""PASCAL VOC 2012 segmentation classes, from the VOC development kit.

``SegmentationClass/*.png`` are palette images whose indices are the class
ids; 255 marks object borders and difficult regions, ignored in evaluation.
"""


def _voc_colormap(n):
    """The devkit's colour map (``VOClabelcolormap.m``): the bits of the
    index, three at a time, fill R, G and B from the most significant bit."""
    colors = []
    for index in range(n):
        rgb = [0, 0, 0]
        bits = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
        colors.append(tuple(rgb))
    return colors


#: Names of the 21 classes (background and the 20 object classes), in
#: class-id order, as the devkit spells them.
voc_semantic_segmentation_label_names = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
    'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
    'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
    'tvmonitor')

#: The full 256-entry ground truth palette, (R, G, B) per index.
voc_palette = tuple(_voc_colormap(256))

#: (R, G, B) colours of the 21 classes in the ground truth palette.
voc_semantic_segmentation_label_colors = tuple(voc_palette[:21])

#: Colour of the ignored value 255 (borders) in the ground truth palette.
voc_semantic_segmentation_ignore_label_color = voc_palette[255]
