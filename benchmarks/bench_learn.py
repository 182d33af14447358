"""Does the training recipe learn? PSPNetResNet50 from scratch on shapes.

    .venv/bin/python -m benchmarks.bench_learn [--iterations 200]
        [--crop-size 97] [--batchsize 4] [--processes 1] [--lr 0.01]
        [--n-train 48] [--n-val 12] [--keep DIR]
        [--json result/bench_learn.json]

Generates a dataset described by a ``dataset.json`` (the user's-data
layout: ``images/`` and ``labels/`` folders): coloured discs, squares and
triangles (one colour per shape, with jitter) on textured backgrounds
(random stripes and noise), 128 x 128 pixels, palette-PNG labels with an
ignored border around each shape. Then it runs ``mpiexec -n P python
train_multi.py --dataset .../dataset.json --model pspnet_resnet50
--pretrained-model none`` on the CPU (random initialization: the ImageNet
extractor cannot be downloaded offline) and reports the validation mean
IoU after the last iteration (from the run's ``validation.json``) and the
seconds per iteration (from the log, the first two iterations left out).
A network that did not learn stays near the IoU of predicting background
everywhere (about 0.2); chance over the four classes is lower still.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.json_results import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
CLASSES = ('background', 'disc', 'square', 'triangle')
#: Mean RGB of each shape class.
SHAPE_COLORS = ((220, 40, 40), (40, 200, 60), (50, 80, 230))
SIZE = 128
IGNORE = 255


def _texture(rng):
    """(SIZE, SIZE, 3) float background: grey stripes at a random angle
    and frequency, plus noise."""
    import numpy as np
    y, x = np.mgrid[:SIZE, :SIZE]
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(0.05, 0.4)
    stripes = np.sin((x * np.cos(angle) + y * np.sin(angle)) * freq)
    base = rng.uniform(60, 190)
    grey = base + 40 * stripes[..., None] + rng.normal(0, 12, (SIZE, SIZE, 3))
    return grey + rng.uniform(-25, 25, 3)


def draw_shapes(rng):
    """One image of the benchmark's dataset.

    Returns:
        tuple: ``(img, shapes)``: img a (SIZE, SIZE, 3) float RGB array
        (not yet clipped), shapes a list of ``(class, mask)`` in drawing
        order (later ones on top), mask a (SIZE, SIZE) uint8 0/1 array of
        the whole shape.
    """
    import cv2
    import numpy as np
    img = _texture(rng)
    shapes = []
    for _ in range(rng.randint(1, 4)):
        cls = rng.randint(1, len(CLASSES))
        mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
        r = rng.randint(10, 26)
        cx, cy = rng.randint(r, SIZE - r, 2)
        if cls == 1:
            cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
        elif cls == 2:
            cv2.rectangle(mask, (int(cx - r), int(cy - r)),
                          (int(cx + r), int(cy + r)), 1, -1)
        else:
            pts = np.array([[cx, cy - r], [cx - r, cy + r],
                            [cx + r, cy + r]], dtype=np.int32)
            cv2.fillPoly(mask, [pts], 1)
        color = np.array(SHAPE_COLORS[cls - 1]) + rng.uniform(-30, 30, 3)
        inside = mask.astype(bool)
        img[inside] = color + rng.normal(0, 10, (inside.sum(), 3))
        shapes.append((int(cls), mask))
    return img, shapes


def _write_image(folder, stem, img):
    import cv2
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    cv2.imwrite(os.path.join(folder, stem + '.png'), rgb[:, :, ::-1])


def make_shapes_dataset(root, n_train, n_val, seed=0):
    """Write the dataset and return the path of its ``dataset.json``."""
    import cv2
    import numpy as np
    from PIL import Image
    rng = np.random.RandomState(seed)
    desc = {'classes': list(CLASSES), 'input_size': 97,
            'colors': [[0, 0, 0]] + [list(c) for c in SHAPE_COLORS]}
    palette = [0] * 768
    for c, rgb in enumerate(desc['colors']):
        palette[3 * c:3 * c + 3] = rgb
    palette[3 * IGNORE:3 * IGNORE + 3] = [255, 255, 255]
    for split, n in (('train', n_train), ('val', n_val)):
        for k in range(n):
            img, shapes = draw_shapes(rng)
            label = np.zeros((SIZE, SIZE), dtype=np.uint8)
            for cls, mask in shapes:
                border = cv2.dilate(mask, np.ones((3, 3), np.uint8)) \
                    - cv2.erode(mask, np.ones((3, 3), np.uint8))
                label[mask.astype(bool)] = cls
                label[border.astype(bool)] = IGNORE
            stem = '{}_{:04d}'.format(split, k)
            _write_image(os.path.join(root, 'images', split), stem, img)
            os.makedirs(os.path.join(root, 'labels', split), exist_ok=True)
            png = Image.fromarray(label, mode='P')
            png.putpalette(palette)
            png.save(os.path.join(root, 'labels', split, stem + '.png'))
        desc[split] = {'images': 'images/' + split,
                       'labels': 'labels/' + split}
    path = os.path.join(root, 'dataset.json')
    with open(path, 'w') as f:
        json.dump(desc, f, indent=2)
    return path


def _segmentation(mask, polygon):
    """A COCO segmentation of a 0/1 mask: polygons (the outer contours;
    what lies in a hole is a later, smaller shape, which the conversion
    draws on top) or pycocotools' compressed RLE."""
    import cv2
    import numpy as np
    from pycocotools import mask as mask_utils
    if polygon:
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        if contours and all(len(c) >= 3 for c in contours):
            # Contours run through pixel centres; COCO's polygons are in
            # pixel corners' coordinates.
            return [(c.reshape(-1, 2) + 0.5).ravel().tolist()
                    for c in contours]
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {'counts': rle['counts'].decode('ascii'),
            'size': [int(v) for v in rle['size']]}


def make_coco_export(root, n_train, n_val, seed=0):
    """Write the same images as :func:`make_shapes_dataset` (same seed,
    same draws) as an annotation tool's COCO export: ``images/`` and
    ``annotations/train.json``, ``annotations/val.json``, one annotation per shape holding its
    visible part, polygons and compressed RLE in turn, category ids that
    are not the class ids.

    Returns:
        dict: ``images`` (the folder), and split -> path of its JSON file.
    """
    import numpy as np
    rng = np.random.RandomState(seed)
    category_ids = {1: 5, 2: 9, 3: 2}
    paths = {'images': os.path.join(root, 'images')}
    for split, n in (('train', n_train), ('val', n_val)):
        images, annotations = [], []
        for k in range(n):
            img, shapes = draw_shapes(rng)
            stem = '{}_{:04d}'.format(split, k)
            _write_image(os.path.join(root, 'images'), stem, img)
            images.append({'id': k + 1, 'file_name': stem + '.png',
                           'width': SIZE, 'height': SIZE})
            for j, (cls, mask) in enumerate(shapes):
                visible = mask.copy()
                for _, later in shapes[j + 1:]:
                    visible[later.astype(bool)] = 0
                if not visible.any():
                    continue
                annotations.append({
                    'id': len(annotations) + 1, 'image_id': k + 1,
                    'category_id': category_ids[cls], 'iscrowd': 0,
                    'area': float(visible.sum()),
                    'segmentation': _segmentation(
                        visible, polygon=len(annotations) % 2 == 0)})
        data = {'images': images, 'annotations': annotations,
                'categories': [{'id': category_ids[c], 'name': CLASSES[c]}
                               for c in (3, 1, 2)]}
        os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
        paths[split] = os.path.join(root, 'annotations', split + '.json')
        with open(paths[split], 'w') as f:
            json.dump(data, f)
    return paths


def _prepare_coco(work, args):
    """The COCO export made into a dataset by prepare_dataset.py; the
    path of its dataset.json."""
    export = make_coco_export(os.path.join(work, 'coco'), args.n_train,
                              args.n_val)
    prepared = os.path.join(work, 'shapes')
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'prepare_dataset.py'), 'coco',
         '--train', export['train'], '--val', export['val'], '--images',
         export['images'], '--out',
         prepared, '--no-progress'], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True)
    if result.returncode != 0:
        raise RuntimeError('prepare_dataset.py failed:\n' + result.stderr)
    print(result.stdout.strip())
    return os.path.join(prepared, 'dataset.json')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iterations', type=int, default=200)
    parser.add_argument('--crop-size', type=int, default=97)
    parser.add_argument('--batchsize', type=int, default=4)
    parser.add_argument('--processes', type=int, default=1)
    parser.add_argument('--lr', type=float, default=0.01)
    parser.add_argument('--n-train', type=int, default=48)
    parser.add_argument('--n-val', type=int, default=12)
    parser.add_argument('--source', choices=('labels', 'coco'),
                        default='labels',
                        help='labels (default): palette label PNGs and a '
                        'dataset.json written directly; coco: the same '
                        'images as a COCO export, made into a dataset by '
                        'prepare_dataset.py coco')
    parser.add_argument('--keep', metavar='DIR',
                        help='write the dataset and the run into DIR and '
                        'keep them (default: a temporary folder)')
    parser.add_argument('--json', help='default: result/bench_learn.json '
                        '(result/bench_learn_coco.json with --source coco)')
    args = parser.parse_args()
    if args.json is None:
        args.json = os.path.join('result', 'bench_learn{}.json'.format(
            '_coco' if args.source == 'coco' else ''))
    if not os.path.isfile(MPIEXEC):
        parser.error('no mpiexec next to {}; pip install mpich'.format(
            sys.executable))
    work = args.keep or tempfile.mkdtemp(prefix='bench-learn-')
    try:
        if args.source == 'labels':
            dataset = make_shapes_dataset(os.path.join(work, 'shapes'),
                                          args.n_train, args.n_val)
        else:
            dataset = _prepare_coco(work, args)
        out = os.path.join(work, 'run')
        command = [
            MPIEXEC, '-n', str(args.processes), sys.executable,
            os.path.join(ROOT, 'train_multi.py'), '--dataset', dataset,
            '--model', 'pspnet_resnet50', '--out', out, '--device', 'cpu',
            '--crop-size', str(args.crop_size), '--batchsize',
            str(args.batchsize), '--iteration', str(args.iterations),
            '--lr', str(args.lr), '--pretrained-model', 'none',
            '--log-interval', '10', '--snapshot-interval',
            str(args.iterations + 1), '--val-interval', '0',
            '--loaderjob', '0', '--no-progress']
        cores = len(os.sched_getaffinity(0))
        env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS=str(
            max(1, cores // args.processes)))
        start = time.time()
        result = subprocess.run(command, cwd=ROOT, env=env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                universal_newlines=True)
        wall = time.time() - start
        if result.returncode != 0:
            raise RuntimeError('train_multi.py failed:\n' + result.stderr)
        with open(os.path.join(out, 'validation.json')) as f:
            figures = json.load(f)
        with open(os.path.join(out, 'log')) as f:
            log = json.load(f)
        # Log lines every 10 iterations: time per iteration between the
        # first line and the one before the last (the last includes the
        # validation).
        first, last = log[0], log[-2] if len(log) > 2 else log[-1]
        per_iter = ((last['elapsed_time'] - first['elapsed_time'])
                    / max(1, last['iteration'] - first['iteration']))
        losses = [(e['iteration'], e['main/loss']) for e in log]
        # The order of the IoUs: prepare_dataset.py orders the classes as
        # the export's categories.
        with open(dataset) as f:
            classes = json.load(f)['classes']
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(result.stdout.split('mean IoU')[0][-2000:] if 'mean IoU'
          in result.stdout else '')
    print('PSPNetResNet50 from scratch on {}, {} iterations, crop {}, '
          'batch {} x {} process(es): validation mIoU {:.3f}, pixel '
          'accuracy {:.3f}, {:.2f} s per iteration'.format(
              'a COCO export' if args.source == 'coco' else 'label PNGs',
              args.iterations, args.crop_size, args.batchsize,
              args.processes, figures['miou'], figures['pixel_accuracy'],
              per_iter))
    write_json(args.json, {
        'model': 'pspnet_resnet50', 'device': 'cpu', 'classes': classes,
        'source': args.source,
        'iterations': args.iterations, 'crop_size': args.crop_size,
        'batchsize': args.batchsize, 'processes': args.processes,
        'lr': args.lr, 'n_train': args.n_train, 'n_val': args.n_val,
        'miou': figures['miou'], 'iou': figures['iou'],
        'pixel_accuracy': figures['pixel_accuracy'],
        'seconds_per_iteration': per_iter, 'wall_seconds': wall,
        'loss': losses, 'cpu_count': os.cpu_count(),
        'load_average': os.getloadavg(), 'machine': platform.platform()})


if __name__ == '__main__':
    main()
