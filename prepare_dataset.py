#!/usr/bin/env python
"""Make a dataset of an annotation tool's export, and look at a dataset
before training.

    python prepare_dataset.py coco --train TRAIN.json [--val VAL.json]
        [--test TEST.json] [--images DIR] --out OUT
    python prepare_dataset.py labelme --train DIR [--val DIR] [--test DIR]
        [--classes FILE] --out OUT
    python prepare_dataset.py cvat EXPORT_DIR [--images DIR] --out OUT
    python prepare_dataset.py preview --dataset OUT/dataset.json
        [--split S] --out DIR

The conversions write OUT/images, OUT/labels (single-channel PNGs of
class ids) and OUT/dataset.json, which ``--dataset OUT/dataset.json``
takes in train_multi.py, eval_semantic_segmentation.py and demo.py;
everything is checked before anything is written, and OUT appears whole
or not at all. ``preview`` checks every label map of a split as training
does and writes a contact sheet and the classes' pixel frequencies.
"""

from pspnet import flags
from pspnet.annotations import coco
from pspnet.apps import prepare
from pspnet.cli import ArgumentParser
from pspnet.cli import exit_on_user_error


def _add_output(parser):
    parser.add_argument('--out', required=True, metavar='OUT',
                        help='the dataset folder to write (images/, '
                        'labels/, dataset.json)')
    parser.add_argument('--val-fraction', type=flags.fraction, metavar='F',
                        help='move this fraction of the training images '
                        'into a val split (for an export without one)')
    parser.add_argument('--seed', type=flags.non_negative_int, default=0,
                        help='seed of the --val-fraction draw (default 0)')
    parser.add_argument('--force', action='store_true',
                        help='replace an OUT that holds files')
    parser.add_argument('--copy', action='store_true',
                        help='copy the images (default: hard links where '
                        'the file system allows, else copies)')
    parser.add_argument('--no-progress', dest='show_progress',
                        action='store_false',
                        help='no progress bar')


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split('\n')[0] + ' '
                            + __doc__.split('\n')[1].strip())
    commands = parser.add_subparsers(dest='format', required=True,
                                     metavar='{coco,labelme,cvat,preview}')

    sub = commands.add_parser(
        'coco', help='COCO instance annotations (polygons, RLE)',
        description='COCO instance annotations (polygons and RLE) as label '
        'maps: background first, then the categories; overlapping '
        'annotations drawn largest first.')
    sub.add_argument('--train', required=True, metavar='TRAIN.json')
    sub.add_argument('--val', metavar='VAL.json')
    sub.add_argument('--test', metavar='TEST.json',
                     help='may come without "annotations" (no labels)')
    sub.add_argument('--images', metavar='DIR',
                     help='the folder file_name is relative to (default: '
                     'the folder of each JSON file)')
    sub.add_argument('--crowd', choices=coco.CROWD_CHOICES,
                     default='ignore',
                     help='crowd regions (iscrowd 1): ignored pixels '
                     '(default) or drawn as their category')
    _add_output(sub)

    sub = commands.add_parser(
        'labelme', help='labelme JSON files',
        description='labelme JSON files (polygons, rectangles, circles, '
        'masks) as label maps, drawn as labelme draws them.')
    sub.add_argument('--train', required=True, metavar='DIR',
                     help='folder of the training JSON files (subfolders '
                     'included)')
    sub.add_argument('--val', metavar='DIR')
    sub.add_argument('--test', metavar='DIR')
    sub.add_argument('--classes', metavar='FILE',
                     help='class names, one a line, the background first '
                     '(labelme\'s labels.txt; default: background, then the '
                     'labels found, sorted)')
    _add_output(sub)

    sub = commands.add_parser(
        'cvat', help='CVAT "Segmentation mask 1.1" export',
        description='A CVAT "Segmentation mask 1.1" export (labelmap.txt, '
        'SegmentationClass, ImageSets/Segmentation) as label maps of class '
        'ids.')
    sub.add_argument('export_dir', metavar='EXPORT_DIR',
                     help='the unpacked export folder')
    sub.add_argument('--images', metavar='DIR',
                     help='the task\'s images, for an export without them')
    _add_output(sub)

    sub = commands.add_parser(
        'preview', help='check a dataset and draw what its labels hold',
        description='Check every label map of a split as training does; '
        'write a contact sheet of images with their labels and the '
        'classes\' pixel frequencies.')
    sub.add_argument('--dataset', required=True, type=flags.dataset,
                     metavar=flags.dataset_names())
    sub.add_argument('--split', default='train',
                     help='the split to look at (default train)')
    sub.add_argument('--out', required=True, metavar='DIR',
                     help='folder of contact_sheet.png, '
                     'class_frequencies.png and class_frequencies.csv '
                     '(replaced whole)')
    sub.add_argument('--sheet-images', type=flags.non_negative_int,
                     default=48, metavar='N',
                     help='images on the contact sheets, spread evenly over '
                     'the split (default 48; 0: all)')
    sub.add_argument('--data-dir', default='auto',
                     help="the dataset's folder (default 'auto')")
    sub.add_argument('--no-progress', dest='show_progress',
                     action='store_false', help='no progress bar')
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    if args.format == 'preview':
        prepare.preview(prepare.PreviewOptions.from_namespace(args))
    else:
        prepare.prepare(prepare.PrepareOptions.from_namespace(args))


if __name__ == '__main__':
    main()
