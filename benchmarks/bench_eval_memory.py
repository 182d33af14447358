"""Peak memory of an evaluation versus the number of images.

    .venv/bin/python -m benchmarks.bench_eval_memory [--counts 10,40,160]
        [--size 256,512] [--json result/bench_eval_memory.json]

Writes a synthetic Cityscapes val set (real layout) of the largest count,
then, in a fresh process per run, evaluates the first N images with the
real dataset class and the real streaming accumulation
(``pspnet.evaluations.evaluate_model``) and a stand-in predictor (no
network, so that only the evaluation's own memory is measured). For
contrast, the ChainerCV way is measured too: keep every predicted and true
label map, then compute the metrics. Peak RSS should stay flat for the
streaming evaluation and grow with N for the other.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks.json_results import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CLASS = 19


class StandInPredictor(object):
    """Labels each pixel by its brightest channel and brightness: a
    deterministic (H, W) int32 map in [0, 18] per image, no network."""

    def predict(self, imgs):
        return [((img.argmax(axis=0) * 7 + (img.sum(axis=0) // 40))
                 % N_CLASS).astype(np.int32) for img in imgs]


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode, n_images, data_dir):
    from pspnet.datasets import CityscapesSemanticSegmentationDataset
    from pspnet.evaluations import eval_semantic_segmentation
    from pspnet.evaluations import evaluate_model
    from pspnet.evaluations import semantic_segmentation_metrics

    dataset = CityscapesSemanticSegmentationDataset(data_dir, split='val')
    model = StandInPredictor()
    baseline = _peak_rss_mb()
    if mode == 'streaming':
        confusion = evaluate_model(model, dataset, range(n_images), N_CLASS)
        miou = semantic_segmentation_metrics(confusion)['miou']
    else:
        preds, gts = [], []
        for i in range(n_images):
            img, label = dataset[i]
            preds.extend(model.predict([img]))
            gts.append(label)
        miou = eval_semantic_segmentation(preds, gts)['miou']
    print(json.dumps({'peak_rss_mb': _peak_rss_mb(),
                      'rss_after_imports_mb': baseline,
                      'miou': float(miou)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--counts', default='10,40,160')
    parser.add_argument('--size', default='256,512',
                        help='image height,width')
    parser.add_argument('--json', default=os.path.join(
        'result', 'bench_eval_memory.json'))
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(',')]
    size = tuple(int(s) for s in args.size.split(','))

    from tests.helpers import dataset_factory
    with tempfile.TemporaryDirectory(prefix='bench-eval-') as tmp:
        n_max = max(counts)
        cities = ('aachen', 'bochum', 'zurich', 'bremen')
        per_city = -(-n_max // len(cities))
        data_dir = dataset_factory.make_cityscapes(
            os.path.join(tmp, 'cityscapes'), splits=('val',), cities=cities,
            n_per_city=per_city, size=size)
        rows = []
        for n in counts:
            row = {'n_images': n}
            for mode in ('streaming', 'keep_all'):
                out = subprocess.check_output(
                    [sys.executable, '-m', 'benchmarks.bench_eval_memory',
                     '--child', mode, str(n), data_dir], cwd=ROOT,
                    universal_newlines=True)
                result = json.loads(out.strip().splitlines()[-1])
                row[mode + '_peak_rss_mb'] = round(result['peak_rss_mb'], 1)
                row[mode + '_miou'] = result['miou']
            assert row['streaming_miou'] == row['keep_all_miou']
            rows.append(row)

    map_mb = size[0] * size[1] * 4 / 2.0 ** 20
    print('image size {}x{}, one int32 label map = {:.2f} MB'.format(
        size[0], size[1], map_mb))
    print('{:>8} | {:>22} | {:>24}'.format(
        'images', 'streaming peak RSS MB', 'keep-all peak RSS MB'))
    for row in rows:
        print('{:>8} | {:>22.1f} | {:>24.1f}'.format(
            row['n_images'], row['streaming_peak_rss_mb'],
            row['keep_all_peak_rss_mb']))
    write_json(args.json, {'image_size': size, 'rows': rows})


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--child':
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
