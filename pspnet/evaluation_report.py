"""The folder of an evaluation report (``eval_semantic_segmentation.py
--report DIR``): its pictures and its page.

* ``confusion_matrix.png``: the confusion matrix with each true class's
  row normalized to its pixels, class names on both axes (readable at 150
  classes), beside a list of the most confused pairs;
* ``confusion_matrix.csv`` and ``per_image.csv``
  (:mod:`pspnet.evaluations.report`);
* ``worst/NN_NAME.png``: for each of the worst images, the image, its
  truth, the prediction and the errors;
* ``index.html``: a static page (no script, no server) that shows them
  all, with relative links.

:func:`report_files` makes every file's content, :func:`write_report`
puts them in place at once. The numbers come from
:mod:`pspnet.evaluations.report`.
"""

import html
import io
import os
import re
import urllib.parse

import numpy as np

from pspnet import atomic
from pspnet import visualizations
from pspnet.errors import UserError
from pspnet.evaluations import report
from pspnet.evaluations import semantic_segmentation_metrics

#: Resolution of the pictures, dots per inch.
DPI = 100
#: Largest panel of a worst image's picture, (height, width) in inches.
WORST_PANEL = (3.0, 4.5)
#: Colours of the errors panel: wrong pixels, ignored pixels (RGB).
ERROR_COLOR = (255, 0, 0)
IGNORED_COLOR = (255, 255, 255)
#: Most classes whose cells carry their percentage in the matrix.
ANNOTATED_CLASSES = 20


def _png(fig, dpi=DPI):
    buffer = io.BytesIO()
    # No date or version in the file: equal pictures are equal bytes.
    fig.savefig(buffer, format='png', dpi=dpi, bbox_inches='tight',
                metadata={'Software': None})
    return buffer.getvalue()


def normalized_rows(confusion):
    """Each true class's row of a confusion matrix over its pixels.

    Returns:
        numpy.ndarray: (n_class, n_class) float64 in [0, 1]; NaN rows for
        classes without pixels in the truth.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    rows = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(rows > 0, confusion / np.maximum(rows, 1), np.nan)


def _pair_lines(pairs, label_names):
    if not pairs:
        return ['no pixel of one class was predicted as another']
    width = max(len(label_names[true]) for true, _, _, _ in pairs)
    return ['{:>5.1f} %  {} \u2192 {}  ({:,} px)'.format(
        100 * share, label_names[true].ljust(width), label_names[predicted],
        pixels) for true, predicted, pixels, share in pairs]


def confusion_figure(confusion, label_names, pairs):
    """The confusion matrix, rows normalized, with the class names on both
    axes in a font that fits a cell (so that 150 classes stay readable
    when zoomed), a colour bar, and beside it the most confused pairs.

    Args:
        confusion (numpy.ndarray): (n_class, n_class) int64 pixel counts,
            rows the true classes.
        label_names (sequence of str): n_class names.
        pairs (list): :func:`pspnet.evaluations.report.confused_pairs`.

    Returns:
        matplotlib.figure.Figure: Off-screen.
    """
    import matplotlib
    from matplotlib.figure import Figure
    n = len(label_names)
    matrix = normalized_rows(confusion)
    side = max(4.0, 0.11 * n)  # inches
    cell_points = 72 * side / max(n, 1)
    font = min(9.0, 0.75 * cell_points)
    longest = max([len(name) for name in label_names] + [1])
    margin = 0.6 + longest * font * 0.62 / 72
    pair_lines = _pair_lines(pairs, label_names)
    pair_width = 0.4 + max(len(line) for line in pair_lines) * 8 * 0.62 / 72
    width = margin + side + 0.9 + pair_width
    height = margin + side + 0.6
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes([margin / width, margin / height, side / width,
                       side / height])
    cmap = matplotlib.colormaps['Blues'].copy()
    cmap.set_bad((0.85, 0.85, 0.85))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0, vmax=1,
                      interpolation='nearest', aspect='equal')
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(label_names, rotation=90, fontsize=font)
    ax.set_yticklabels(label_names, fontsize=font)
    ax.tick_params(length=2, width=0.5, pad=1)
    ax.set_xlabel('predicted class')
    ax.set_ylabel('true class')
    ax.set_title('confusion matrix: each true class over its pixels '
                 '(grey: no pixels)', fontsize=10)
    if n <= ANNOTATED_CLASSES:
        for (i, j), value in np.ndenumerate(matrix):
            if not np.isnan(value) and value > 0:
                ax.text(j, i, '{:.0f}'.format(100 * value), ha='center',
                        va='center', fontsize=min(font, 8),
                        color='white' if value > 0.5 else 'black')
    bar = fig.add_axes([(margin + side + 0.15) / width, margin / height,
                        0.2 / width, side / height])
    fig.colorbar(image, cax=bar)
    bar.tick_params(labelsize=8)
    text = fig.add_axes([(margin + side + 0.9) / width, margin / height,
                         pair_width / width, side / height])
    text.set_axis_off()
    text.text(0, 1, 'most confused pairs (true \u2192 predicted, share of '
              'the true class)', fontsize=9, va='top', weight='bold',
              transform=text.transAxes)
    text.text(0, 1 - 0.3 / side, '\n'.join(pair_lines), fontsize=8,
              va='top', family='monospace', transform=text.transAxes)
    return fig


def error_image(img, gt_label, pred_label):
    """The errors of a prediction over a dimmed grey image.

    Args:
        img (numpy.ndarray): (3, H, W) RGB in [0, 255].
        gt_label (numpy.ndarray): (H, W) int true ids, -1 ignored.
        pred_label (numpy.ndarray): (H, W) int predicted ids.

    Returns:
        numpy.ndarray: (H, W, 3) uint8 RGB: the image in grey at half
        brightness where right, :data:`ERROR_COLOR` where wrong,
        :data:`IGNORED_COLOR` where ignored.
    """
    grey = np.clip(np.asarray(img, dtype=np.float64).mean(axis=0) / 2, 0,
                   127.5).round().astype(np.uint8)
    out = np.repeat(grey[:, :, None], 3, axis=2)
    ignored = np.asarray(gt_label) < 0
    out[(np.asarray(pred_label) != gt_label) & ~ignored] = ERROR_COLOR
    out[ignored] = IGNORED_COLOR
    return out


def worst_figure(img, gt_label, pred_label, label_names, label_colors,
                 title):
    """A worst image's picture: the image, its truth, the prediction and
    the errors in a 2 x 2 grid, with a legend of the classes in the truth
    or the prediction.

    Args:
        img (numpy.ndarray): (3, H, W) RGB in [0, 255].
        gt_label (numpy.ndarray): (H, W) int true ids in [-1, n_class).
        pred_label (numpy.ndarray): (H, W) int predicted ids.
        label_names (sequence of str): n_class names.
        label_colors (numpy.ndarray): (n_class, 3) RGB colours.
        title (str): The title.

    Returns:
        matplotlib.figure.Figure: Off-screen.
    """
    from matplotlib.figure import Figure
    shape = np.asarray(gt_label).shape
    handles = visualizations.legend_handles(
        np.stack([gt_label, pred_label]), label_names, label_colors)
    panel_h, _ = visualizations.panel_size(shape, WORST_PANEL)
    n_column = visualizations.legend_columns(len(handles), 2 * panel_h)
    fig = Figure()
    axes = visualizations.place_panels(
        fig, shape, 2, 2, right=2.4 * n_column if handles else 0,
        title=True, size=WORST_PANEL)
    pictures = [
        ('image', np.clip(np.asarray(img).transpose(1, 2, 0), 0, 255)
         .astype(np.uint8)),
        ('truth (ignored: black)', visualizations.colorize_label(
            gt_label, label_colors).transpose(1, 2, 0)),
        ('prediction', visualizations.colorize_label(
            pred_label, label_colors).transpose(1, 2, 0)),
        ('errors: red (ignored: white)',
         error_image(img, gt_label, pred_label))]
    for ax, (name, picture) in zip(axes, pictures):
        ax.imshow(picture, interpolation='nearest')
        ax.set_title(name, fontsize=9)
    if handles:
        axes[1].legend(handles=handles, loc='upper left',
                       bbox_to_anchor=(1, 1), borderaxespad=0.3,
                       ncol=n_column, fontsize='small', frameon=False)
    fig.suptitle(title, x=axes[1].get_position().x1 / 2,
                 y=1 - 0.05 / fig.get_size_inches()[1], va='top',
                 fontsize=10)
    return fig


def worst_picture(img, gt_label, pred_label, label_names, label_colors,
                  title):
    """:func:`worst_figure` as PNG bytes."""
    return _png(worst_figure(img, gt_label, pred_label, label_names,
                             label_colors, title))


def worst_title(rank, name, row):
    """The title of the ``rank``-th worst image (1 the worst) of a
    :func:`pspnet.evaluations.report` row ``(pixels, correct, iou)``."""
    pixels, correct, iou = row
    return '#{} {}: IoU of the classes present {:.4f}, pixel accuracy ' \
        '{:.4f}'.format(rank, name, iou, correct / pixels)


def worst_file(rank, name, n_worst):
    """The file of the ``rank``-th worst image (1 the worst), relative to
    the report: ``worst/01_NAME.png``, NAME the image's path with
    characters other than letters, digits, ``.``, ``_`` and ``-``
    replaced by ``_``."""
    stem = re.sub(r'[^A-Za-z0-9._-]', '_', os.path.splitext(name)[0])
    return '{}/{:0{}d}_{}.png'.format(report.WORST_FOLDER, rank,
                                      len(str(n_worst)), stem)


def _number(value, digits=4):
    return 'n/a' if value is None or np.isnan(value) else \
        '{:.{}f}'.format(value, digits)


def _href(path):
    return html.escape(urllib.parse.quote(path), quote=True)


_STYLE = '''body { font-family: sans-serif; margin: 2em; max-width: 80em; }
table { border-collapse: collapse; margin-bottom: 1em; }
th, td { padding: 0.15em 0.6em; border-bottom: 1px solid #ddd; }
td { text-align: right; }
td.name, th.name { text-align: left; }
img { max-width: 100%; }
figure { margin: 0 0 2em 0; }'''


def index_html(description, metrics, confusion, label_names, pairs, worst,
               n_images):
    """The report's page: plain HTML, every link relative.

    Args:
        description (list of (str, str)): What was evaluated (dataset,
            split, model...), shown first.
        metrics (dict): The figures of the confusion matrix
            (:func:`pspnet.evaluations.semantic_segmentation_metrics`).
        confusion (numpy.ndarray): (n_class, n_class) int64.
        label_names (sequence of str): n_class names.
        pairs (list): The most confused pairs.
        worst (list of dict): ``file``, ``name``, ``iou``, ``accuracy``,
            ``pixels`` of each worst image, the worst first.
        n_images (int): Images evaluated.

    Returns:
        str: The page.
    """
    e = html.escape
    rows = np.asarray(confusion).sum(axis=1)
    columns = np.asarray(confusion).sum(axis=0)
    out = ['<!DOCTYPE html>', '<html lang="en">', '<head>',
           '<meta charset="utf-8">',
           '<title>Evaluation report: {}</title>'.format(
               e(', '.join(value for _, value in description[:2]))),
           '<style>', _STYLE, '</style>', '</head>', '<body>',
           '<h1>Evaluation report</h1>', '<table>']
    for key, value in description:
        out.append('<tr><th class="name">{}</th><td class="name">{}</td>'
                   '</tr>'.format(e(key), e(value)))
    for key, value in (
            ('images', '{:,}'.format(n_images)),
            ('mean IoU', _number(metrics['miou'])),
            ('pixel accuracy', _number(metrics['pixel_accuracy'])),
            ('mean class accuracy', _number(metrics['mean_class_accuracy']))):
        out.append('<tr><th class="name">{}</th><td class="name">{}</td>'
                   '</tr>'.format(e(key), e(value)))
    out += ['</table>', '<h2>Files</h2>', '<ul>']
    for path, what in (
            ('confusion_matrix.png', 'the confusion matrix, rows '
             'normalized'),
            ('confusion_matrix.csv', 'the confusion matrix in pixels: rows '
             'the true classes, columns the predicted ones'),
            ('per_image.csv', 'each image: labelled pixels, pixel accuracy, '
             'IoU of the classes present in its truth or prediction')):
        out.append('<li><a href="{}">{}</a>: {}</li>'.format(
            _href(path), e(path), e(what)))
    out += ['</ul>', '<h2>Confusion matrix</h2>',
            '<p><a href="confusion_matrix.png"><img '
            'src="confusion_matrix.png" alt="confusion matrix"></a></p>',
            '<h2>Most confused pairs</h2>']
    if pairs:
        out += ['<table>', '<tr><th class="name">true class</th>'
                '<th class="name">predicted as</th><th>pixels</th>'
                '<th>share of the true class</th></tr>']
        for true, predicted, pixels, share in pairs:
            out.append('<tr><td class="name">{}</td><td class="name">{}</td>'
                       '<td>{:,}</td><td>{:.1f} %</td></tr>'.format(
                           e(label_names[true]), e(label_names[predicted]),
                           pixels, 100 * share))
        out.append('</table>')
    else:
        out.append('<p>No pixel of one class was predicted as another.</p>')
    out += ['<h2>Classes</h2>', '<table>',
            '<tr><th>id</th><th class="name">class</th><th>IoU</th>'
            '<th>accuracy</th><th>true pixels</th><th>predicted pixels</th>'
            '</tr>']
    for i, name in enumerate(label_names):
        out.append('<tr><td>{}</td><td class="name">{}</td><td>{}</td>'
                   '<td>{}</td><td>{:,}</td><td>{:,}</td></tr>'.format(
                       i, e(name), _number(metrics['iou'][i]),
                       _number(metrics['class_accuracy'][i]), int(rows[i]),
                       int(columns[i])))
    out += ['</table>', '<h2>The {} worst images</h2>'.format(len(worst))]
    if worst:
        out.append('<p>By the IoU of the classes present in their truth or '
                   'prediction, the lowest first.</p>')
    else:
        out.append('<p>None drawn.</p>')
    for rank, item in enumerate(worst, 1):
        out.append(
            '<figure><a href="{0}"><img src="{0}" alt="{1}"></a>'
            '<figcaption>#{2} {1}: IoU of the classes present {3}, pixel '
            'accuracy {4}, {5:,} labelled pixels</figcaption></figure>'
            .format(_href(item['file']), e(item['name']), rank,
                    _number(item['iou']), _number(item['accuracy']),
                    item['pixels']))
    out += ['</body>', '</html>', '']
    return '\n'.join(out)


def report_files(description, confusion, label_names, names, pixels,
                 correct, iou, worst_pictures, n_pairs=report.DEFAULT_PAIRS):
    """Every file of a report, by its path in the report's folder.

    Args:
        description (list of (str, str)): What was evaluated.
        confusion (numpy.ndarray): (n_class, n_class) int64 pixel counts.
        label_names (sequence of str): n_class names.
        names (list of str): Each image's name (dataset order).
        pixels, correct, iou (sequence): Each image's row
            (:class:`pspnet.evaluations.report.ImageRows`).
        worst_pictures (list of (int, bytes)): The position of each worst
            image among the rows, the worst first, and its picture
            (:func:`worst_picture`).
        n_pairs (int): Most confused pairs listed.

    Returns:
        dict: ``{relative path: bytes}``.
    """
    metrics = semantic_segmentation_metrics(confusion)
    pairs = report.confused_pairs(confusion, n_pairs)
    accuracy = report.pixel_accuracies(pixels, correct)
    files, worst = {}, []
    for rank, (position, picture) in enumerate(worst_pictures, 1):
        path = worst_file(rank, names[position], len(worst_pictures))
        files[path] = picture
        worst.append({'file': path, 'name': names[position],
                      'iou': float(iou[position]),
                      'accuracy': float(accuracy[position]),
                      'pixels': int(pixels[position])})
    files['confusion_matrix.csv'] = report.confusion_csv(
        confusion, label_names).encode('utf-8')
    files['per_image.csv'] = report.per_image_csv(
        names, pixels, correct, iou).encode('utf-8')
    files['confusion_matrix.png'] = _png(confusion_figure(
        confusion, label_names, pairs))
    files['index.html'] = index_html(
        description, metrics, confusion, label_names, pairs, worst,
        len(names)).encode('utf-8')
    return files


def write_report(folder, files):
    """Write a report's files into ``folder`` at once: they are written
    into a new folder beside it, which then takes its place (an earlier
    report there is replaced; after a failure nothing is left, an earlier
    report stays). Check the folder first
    (:func:`pspnet.evaluations.report.check_report_folder`).

    Args:
        folder (str): The report's folder.
        files (dict): ``{relative path: bytes}`` (:func:`report_files`).

    Raises:
        UserError: The files cannot be written (a full disk, permissions).
    """
    try:
        with atomic.replaced_folder(folder) as temporary:
            for path, data in sorted(files.items()):
                target = os.path.join(temporary, *path.split('/'))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                atomic.write_atomic(target, lambda f: f.write(data))
    except OSError as e:
        raise UserError('could not write the report {} ({}); nothing was '
                        'written; {}'.format(
                            folder, e.strerror or e,
                            'free some space on its disk'
                            if atomic.is_disk_full(e)
                            else 'choose a folder you may write to'))
