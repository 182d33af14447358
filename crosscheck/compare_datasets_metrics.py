"""Compare the project's datasets and metrics with ChainerCV's (run with the
oracle venv, not in CI).

    /tmp/oracle-venv/bin/python -m crosscheck.compare_datasets_metrics

On tiny datasets generated in the real layouts
(tests/helpers/dataset_factory.py),
ChainerCV's Cityscapes, ADE20K and VOC classes and ours must give the same
items (same image paths, identical image and label arrays). ChainerCV keeps
Cityscapes in file-system order, so items are matched by image path. Then
ChainerCV's eval_semantic_segmentation and ours must give the same numbers,
NaN included, on random label maps with ignored pixels and absent classes,
and our streaming confusion matrix must equal ChainerCV's.
"""

import os
import tempfile
import warnings

import chainercv.datasets as cv_datasets
import chainercv.evaluations as cv_evaluations
import numpy as np

from pspnet import datasets
from pspnet import evaluations
from tests.helpers import dataset_factory


def compare_items(name, ours, theirs):
    assert len(ours) == len(theirs), (name, len(ours), len(theirs))
    index_of = {os.path.abspath(p): i for i, p in enumerate(
        getattr(theirs, 'img_paths', None) or [
            os.path.join(theirs.data_dir, 'JPEGImages', id_ + '.jpg')
            for id_ in getattr(theirs, 'ids', [])])}
    n_ignored = 0
    for i in range(len(ours)):
        j = index_of[os.path.abspath(ours.img_paths[i])]
        img, label = ours[i]
        cv_img, cv_label = theirs[j]
        assert img.dtype == cv_img.dtype and label.dtype == cv_label.dtype
        np.testing.assert_array_equal(img, cv_img)
        np.testing.assert_array_equal(label, cv_label)
        n_ignored += int((label == -1).sum())
    print('  {:<40} {:>3} items identical ({} ignored pixels)'.format(
        name, len(ours), n_ignored))


def compare_datasets(root):
    cs = dataset_factory.make_cityscapes(
        os.path.join(root, 'cs'), splits=('train', 'val', 'test'),
        cities=('aachen', 'bochum', 'zurich', 'bremen'), n_per_city=3)
    coarse = dataset_factory.make_cityscapes(
        os.path.join(root, 'coarse'), splits=('train', 'val'),
        cities=('aachen', 'erfurt'), n_per_city=2, label_resolution='coarse',
        seed=1)
    for resolution, split, ignore in (('fine', 'train', True),
                                      ('fine', 'val', True),
                                      ('fine', 'test', True),
                                      ('fine', 'val', False),
                                      ('coarse', 'val', True)):
        folder = cs if resolution == 'fine' else coarse
        compare_items(
            'cityscapes {} {} ignore_labels={}'.format(
                resolution, split, ignore),
            datasets.CityscapesSemanticSegmentationDataset(
                folder, resolution, split, ignore),
            cv_datasets.CityscapesSemanticSegmentationDataset(
                folder, resolution, split, ignore))
    ade = dataset_factory.make_ade20k(os.path.join(root, 'ade'), n_images=5)
    for split in ('train', 'val'):
        compare_items('ade20k ' + split,
                      datasets.ADE20KSemanticSegmentationDataset(ade, split),
                      cv_datasets.ADE20KSemanticSegmentationDataset(
                          ade, split))
    voc = dataset_factory.make_voc(os.path.join(root, 'voc'), n_images=5)
    for split in ('train', 'val', 'trainval'):
        compare_items('voc ' + split,
                      datasets.VOCSemanticSegmentationDataset(voc, split),
                      cv_datasets.VOCSemanticSegmentationDataset(voc, split))


def assert_same_metrics(ours, theirs):
    assert sorted(ours) == sorted(theirs), (sorted(ours), sorted(theirs))
    for key in theirs:
        np.testing.assert_array_equal(np.asarray(ours[key]),
                                      np.asarray(theirs[key]), err_msg=key)


def compare_metrics():
    rng = np.random.RandomState(0)
    n_cases = n_nan = 0
    for case in range(200):
        n_class = rng.randint(1, 12)
        n_images = rng.randint(1, 5)
        preds, gts = [], []
        absent = rng.choice(n_class, size=rng.randint(0, n_class),
                            replace=False)
        present = [c for c in range(n_class) if c not in absent] or [0]
        for _ in range(n_images):
            shape = tuple(rng.randint(1, 30, size=2))
            gt = rng.choice(present + [-1], size=shape).astype(np.int32)
            pred = rng.choice(present, size=shape).astype(np.int32)
            preds.append(pred)
            gts.append(gt)
        theirs = cv_evaluations.eval_semantic_segmentation(
            iter(preds), iter(gts))
        ours = evaluations.eval_semantic_segmentation(iter(preds), iter(gts))
        assert_same_metrics(ours, theirs)
        np.testing.assert_array_equal(
            evaluations.calc_semantic_segmentation_confusion(preds, gts),
            cv_evaluations.calc_semantic_segmentation_confusion(preds, gts))
        n_cases += 1
        n_nan += int(np.isnan(theirs['iou']).any())
    print('  eval_semantic_segmentation: {} random cases identical ({} with '
          'NaN IoUs)'.format(n_cases, n_nan))
    # Hand-made corner cases: all ignored, a class only predicted.
    pred = np.array([[0, 2], [2, 2]], dtype=np.int32)
    gt = np.array([[0, -1], [3, 0]], dtype=np.int32)
    assert_same_metrics(
        evaluations.eval_semantic_segmentation([pred], [gt]),
        cv_evaluations.eval_semantic_segmentation([pred], [gt]))
    print('  eval_semantic_segmentation: corner cases identical')


def main():
    # ChainerCV divides 0 by 0 for absent classes, on purpose.
    warnings.simplefilter('ignore', RuntimeWarning)
    with tempfile.TemporaryDirectory(prefix='pspnet-oracle-') as tmp:
        # ChainerCV's Cityscapes class matches split names anywhere in the
        # label path, so the root must not contain 'train', 'val' or 'test'.
        root = os.path.join(tmp, 'data')
        print('datasets (ChainerCV vs pspnet):')
        compare_datasets(root)
    print('metrics (ChainerCV vs pspnet):')
    compare_metrics()
    print('all identical')


if __name__ == '__main__':
    main()
