/*
 * plot.h — LLaMA-Factory's loss plots (`plot_loss: true`): a PNG per
 * logged key, drawn the way extras/ploting.py's plot_loss draws it with
 * matplotlib: a 640x480 figure (6.4x4.8 in at dpi 100), the raw values
 * ("original", #1f77b4 at alpha 0.4) and their TensorBoard-style
 * exponential smoothing ("smoothed", #1f77b4), x = step, y label = the key,
 * title "training <key> of <output dir>", a legend in the corner the curves
 * leave free.  Axes, ticks and labels are drawn by a small rasteriser with a
 * built-in bitmap font; libpng encodes the file, written atomically.
 */
#ifndef LF_PLOT_H
#define LF_PLOT_H

#include <stddef.h>

/* LLaMA-Factory's smooth(): w = 1.8 * (1 / (1 + exp(-0.05 * n)) - 0.5),
 * s[0] = w * x[0] + (1 - w) * x[0], s[k] = w * s[k-1] + (1 - w) * x[k], in
 * the same double operations as the Python (OUT may be IN). */
void lf_plot_smooth(const double *in, double *out, size_t n);

/* Where the plot put its data (pixels, y down): the axes box and the data
 * range it shows, so px = left + (x - xmin) / (xmax - xmin) * (right -
 * left), py = bottom - (y - ymin) / (ymax - ymin) * (bottom - top). */
struct lf_plot_frame {
	int width, height;
	double left, top, right, bottom;
	double xmin, xmax, ymin, ymax;
};

/* Draw VALUES against STEPS (N points, N >= 1; non-finite values break
 * the curves) with TITLE and YLABEL into the PNG PNG_PATH (written under a
 * temporary name and renamed into place).  FRAME (may be NULL) receives
 * the layout.  Returns -1 with lf_fail. */
int lf_plot_loss(const char *png_path, const char *title, const char *ylabel, const long *steps,
		 const double *values, size_t n, struct lf_plot_frame *frame);

/* plot_loss for one key: OUTPUT_DIR/training_<KEY with '/' -> '_'>.png
 * titled "training KEY of OUTPUT_DIR", y label KEY.  Returns 0 when
 * written, 1 when N is 0 (nothing written: LLaMA-Factory warns "No metric
 * KEY to plot."), -1 with lf_fail. */
int lf_plot_key(const char *output_dir, const char *key, const long *steps, const double *values, size_t n);

#endif
