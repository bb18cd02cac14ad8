/*
 * plot.c — LLaMA-Factory's loss plots (see plot.h): the smoothing, the
 * layout of a matplotlib default figure (axes box, 5% data margins,
 * MaxNLocator-style ticks, ScalarFormatter-style labels, legend at the
 * "best" corner), an RGB canvas with anti-aliased lines and coverage masks,
 * a 5x7 bitmap font (with descenders) scaled by box filtering, and the PNG
 * written with libpng through lf_output.
 */
#include "plot.h"

#include "buf.h"
#include "error.h"
#include "output.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the smoothing ---- */

__attribute__((optimize("fp-contract=off"))) void lf_plot_smooth(const double *in, double *out, size_t n)
{
	if (n == 0)
		return;
	double last = in[0];
	double weight = 1.8 * (1.0 / (1.0 + exp(-0.05 * (double)n)) - 0.5);
	for (size_t i = 0; i < n; i++) {
		double v = last * weight + (1.0 - weight) * in[i];
		out[i] = v;
		last = v;
	}
}

/* ---- canvas and masks ---- */

struct rgb {
	unsigned char r, g, b;
};

static const struct rgb BLACK = { 0, 0, 0 };
static const struct rgb WHITE = { 255, 255, 255 };
static const struct rgb BLUE = { 0x1f, 0x77, 0xb4 }; /* matplotlib's C0 */
static const struct rgb EDGE = { 0xcc, 0xcc, 0xcc }; /* legend frame, 0.8 grey */

struct canvas {
	int w, h;
	unsigned char *px; /* RGB rows */
};

/* Coverage in [0, 1] per pixel, the same size as the canvas or a text box. */
struct mask {
	int w, h;
	float *a;
};

static void mask_init(struct mask *m, int w, int h)
{
	m->w = w;
	m->h = h;
	m->a = lf_calloc((size_t)w * (size_t)h + 1, sizeof(float));
}

static void blend(struct canvas *c, int x, int y, struct rgb col, double alpha)
{
	if (x < 0 || y < 0 || x >= c->w || y >= c->h || alpha <= 0)
		return;
	if (alpha > 1)
		alpha = 1;
	unsigned char *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
	unsigned char cc[3] = { col.r, col.g, col.b };
	for (int k = 0; k < 3; k++)
		p[k] = (unsigned char)lround(p[k] + (cc[k] - p[k]) * alpha);
}

/* Paint MASK (placed at X0, Y0) in COL at opacity ALPHA; ROTATE: the mask
 * turned a quarter counter-clockwise (text read bottom to top). */
static void paint(struct canvas *c, const struct mask *m, int x0, int y0, struct rgb col, double alpha, int rotate)
{
	for (int v = 0; v < m->h; v++)
		for (int u = 0; u < m->w; u++) {
			float a = m->a[(size_t)v * (size_t)m->w + (size_t)u];
			if (a <= 0)
				continue;
			if (rotate)
				blend(c, x0 + v, y0 + (m->w - 1 - u), col, alpha * a);
			else
				blend(c, x0 + u, y0 + v, col, alpha * a);
		}
}

static void fill_rect(struct canvas *c, int x0, int y0, int x1, int y1, struct rgb col)
{
	for (int y = y0; y < y1; y++)
		for (int x = x0; x < x1; x++)
			blend(c, x, y, col, 1.0);
}

/* A segment of width WIDTH (pixel centres at +0.5) into the mask, with
 * round ends; coverage combines by maximum, so a polyline painted once has
 * no darker joints. */
static void mask_segment(struct mask *m, double x0, double y0, double x1, double y1, double width)
{
	double hw = width / 2;
	int xa = (int)floor(fmin(x0, x1) - hw - 1), xb = (int)ceil(fmax(x0, x1) + hw + 1);
	int ya = (int)floor(fmin(y0, y1) - hw - 1), yb = (int)ceil(fmax(y0, y1) + hw + 1);
	if (xa < 0)
		xa = 0;
	if (ya < 0)
		ya = 0;
	if (xb > m->w)
		xb = m->w;
	if (yb > m->h)
		yb = m->h;
	double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
	for (int y = ya; y < yb; y++)
		for (int x = xa; x < xb; x++) {
			double px = x + 0.5 - x0, py = y + 0.5 - y0;
			double t = len2 > 0 ? (px * dx + py * dy) / len2 : 0;
			if (t < 0)
				t = 0;
			if (t > 1)
				t = 1;
			double ex = px - t * dx, ey = py - t * dy;
			double d = sqrt(ex * ex + ey * ey);
			double cov = hw + 0.5 - d;
			if (cov <= 0)
				continue;
			if (cov > 1)
				cov = 1;
			/* a line thinner than a pixel covers only part of it */
			if (width < 1)
				cov *= width;
			float *a = &m->a[(size_t)y * (size_t)m->w + (size_t)x];
			if (cov > *a)
				*a = (float)cov;
		}
}

/* A rectangle with rounded corners: RX0..RX1 x RY0..RY1 (pixel edges),
 * radius R; FILL and a one-pixel EDGE ring as coverage masks. */
static void mask_round_rect(struct mask *fill, struct mask *edge, double rx0, double ry0, double rx1, double ry1,
			    double r)
{
	for (int y = (int)floor(ry0) - 1; y <= (int)ceil(ry1); y++)
		for (int x = (int)floor(rx0) - 1; x <= (int)ceil(rx1); x++) {
			if (x < 0 || y < 0 || x >= fill->w || y >= fill->h)
				continue;
			double px = x + 0.5, py = y + 0.5;
			double cx = fmin(fmax(px, rx0 + r), rx1 - r), cy = fmin(fmax(py, ry0 + r), ry1 - r);
			/* signed distance to the outline (negative inside) */
			double qx = fabs(px - cx), qy = fabs(py - cy);
			double d;
			if (px > rx0 + r && px < rx1 - r)
				d = fmax(ry0 - py, py - ry1);
			else if (py > ry0 + r && py < ry1 - r)
				d = fmax(rx0 - px, px - rx1);
			else
				d = sqrt(qx * qx + qy * qy) - r;
			double fc = fmin(fmax(0.5 - d, 0), 1);
			double ec = fmin(fmax(1.0 - fabs(d + 0.5), 0), 1);
			size_t i = (size_t)y * (size_t)fill->w + (size_t)x;
			fill->a[i] = (float)fc;
			edge->a[i] = (float)ec;
		}
}

/* ---- the font ----
 *
 * ASCII 32..126, each glyph 5 columns by 9 rows, '#' lit: rows 0-6 stand
 * on the baseline (capitals fill them, lower case from row 2), rows 7 and 8
 * are descenders.  Rows left out at the end are blank. */
static const char *const GLYPHS[95][9] = {
	/* ' ' */ { NULL },
	/* '!' */ { "..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.." },
	/* '"' */ { ".#.#.", ".#.#." },
	/* '#' */ { ".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#." },
	/* '$' */ { "..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.." },
	/* '%' */ { "##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##" },
	/* '&' */ { ".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#" },
	/* '\'' */ { "..#..", "..#..", ".#..." },
	/* '(' */ { "...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#." },
	/* ')' */ { ".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..." },
	/* '*' */ { ".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#.." },
	/* '+' */ { ".....", "..#..", "..#..", "#####", "..#..", "..#.." },
	/* ',' */ { ".....", ".....", ".....", ".....", ".....", ".##..", "..#..", ".#..." },
	/* '-' */ { ".....", ".....", ".....", ".###." },
	/* '.' */ { ".....", ".....", ".....", ".....", ".....", ".....", "..#.." },
	/* '/' */ { "....#", "...#.", "...#.", "..#..", ".#...", ".#...", "#...." },
	/* '0' */ { ".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###." },
	/* '1' */ { "..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###." },
	/* '2' */ { ".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####" },
	/* '3' */ { "#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###." },
	/* '4' */ { "...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#." },
	/* '5' */ { "#####", "#....", "####.", "....#", "....#", "#...#", ".###." },
	/* '6' */ { "..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###." },
	/* '7' */ { "#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..." },
	/* '8' */ { ".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###." },
	/* '9' */ { ".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.." },
	/* ':' */ { ".....", ".....", "..#..", ".....", ".....", ".....", "..#.." },
	/* ';' */ { ".....", ".....", "..#..", ".....", ".....", ".....", "..#..", ".#..." },
	/* '<' */ { "...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#." },
	/* '=' */ { ".....", ".....", "#####", ".....", "#####" },
	/* '>' */ { ".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..." },
	/* '?' */ { ".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.." },
	/* '@' */ { ".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".####" },
	/* 'A' */ { ".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#" },
	/* 'B' */ { "####.", "#...#", "#...#", "####.", "#...#", "#...#", "####." },
	/* 'C' */ { ".###.", "#...#", "#....", "#....", "#....", "#...#", ".###." },
	/* 'D' */ { "###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.." },
	/* 'E' */ { "#####", "#....", "#....", "####.", "#....", "#....", "#####" },
	/* 'F' */ { "#####", "#....", "#....", "####.", "#....", "#....", "#...." },
	/* 'G' */ { ".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####" },
	/* 'H' */ { "#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#" },
	/* 'I' */ { ".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###." },
	/* 'J' */ { "..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.." },
	/* 'K' */ { "#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#" },
	/* 'L' */ { "#....", "#....", "#....", "#....", "#....", "#....", "#####" },
	/* 'M' */ { "#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#" },
	/* 'N' */ { "#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#" },
	/* 'O' */ { ".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###." },
	/* 'P' */ { "####.", "#...#", "#...#", "####.", "#....", "#....", "#...." },
	/* 'Q' */ { ".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#" },
	/* 'R' */ { "####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#" },
	/* 'S' */ { ".####", "#....", "#....", ".###.", "....#", "....#", "####." },
	/* 'T' */ { "#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.." },
	/* 'U' */ { "#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###." },
	/* 'V' */ { "#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.." },
	/* 'W' */ { "#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#." },
	/* 'X' */ { "#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#" },
	/* 'Y' */ { "#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.." },
	/* 'Z' */ { "#####", "....#", "...#.", "..#..", ".#...", "#....", "#####" },
	/* '[' */ { ".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###." },
	/* '\\' */ { "#....", ".#...", ".#...", "..#..", "...#.", "...#.", "....#" },
	/* ']' */ { ".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###." },
	/* '^' */ { "..#..", ".#.#.", "#...#" },
	/* '_' */ { ".....", ".....", ".....", ".....", ".....", ".....", ".....", "#####" },
	/* '`' */ { ".#...", "..#.." },
	/* 'a' */ { ".....", ".....", ".###.", "....#", ".####", "#...#", ".####" },
	/* 'b' */ { "#....", "#....", "####.", "#...#", "#...#", "#...#", "####." },
	/* 'c' */ { ".....", ".....", ".###.", "#....", "#....", "#...#", ".###." },
	/* 'd' */ { "....#", "....#", ".####", "#...#", "#...#", "#...#", ".####" },
	/* 'e' */ { ".....", ".....", ".###.", "#...#", "#####", "#....", ".###." },
	/* 'f' */ { "..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..." },
	/* 'g' */ { ".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###." },
	/* 'h' */ { "#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#" },
	/* 'i' */ { "..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###." },
	/* 'j' */ { "...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.." },
	/* 'k' */ { "#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#." },
	/* 'l' */ { ".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###." },
	/* 'm' */ { ".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#" },
	/* 'n' */ { ".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#" },
	/* 'o' */ { ".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###." },
	/* 'p' */ { ".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...." },
	/* 'q' */ { ".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#" },
	/* 'r' */ { ".....", ".....", "#.##.", "##..#", "#....", "#....", "#...." },
	/* 's' */ { ".....", ".....", ".####", "#....", ".###.", "....#", "####." },
	/* 't' */ { ".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##." },
	/* 'u' */ { ".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#" },
	/* 'v' */ { ".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.." },
	/* 'w' */ { ".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#." },
	/* 'x' */ { ".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#" },
	/* 'y' */ { ".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###." },
	/* 'z' */ { ".....", ".....", "#####", "...#.", "..#..", ".#...", "#####" },
	/* '{' */ { "...#.", "..#..", "..#..", ".#...", "..#..", "..#..", "...#." },
	/* '|' */ { "..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.." },
	/* '}' */ { ".#...", "..#..", "..#..", "...#.", "..#..", "..#..", ".#..." },
	/* '~' */ { ".....", ".....", ".#...", "#.#.#", "...#." },
};

#define GLYPH_W 5
#define GLYPH_H 9
#define GLYPH_BASE 7 /* rows above the baseline */

static const char *const *glyph_of(unsigned char ch)
{
	if (ch < 32 || ch > 126)
		ch = '?';
	return GLYPHS[ch - 32];
}

static int glyph_on(const char *const *g, int col, int row)
{
	return g[row] && g[row][col] == '#';
}

/* The lit columns of a glyph (proportional spacing; digits keep all five
 * so numbers line up; a space is three blank columns plus the gap). */
static void glyph_cols(unsigned char ch, int *first, int *last)
{
	*first = 0;
	*last = GLYPH_W - 1;
	if (ch >= '0' && ch <= '9')
		return;
	const char *const *g = glyph_of(ch);
	int a = GLYPH_W, b = -1;
	for (int c = 0; c < GLYPH_W; c++)
		for (int r = 0; r < GLYPH_H; r++)
			if (glyph_on(g, c, r)) {
				if (c < a)
					a = c;
				if (c > b)
					b = c;
			}
	if (b < 0) { /* the space */
		*last = 2;
		return;
	}
	*first = a;
	*last = b;
}

/* Text as bytes to draw: a UTF-8 sequence becomes one '?'. */
static size_t text_chars(const char *s, unsigned char *out, size_t cap)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p && n < cap; p++) {
		if (*p >= 0x80 && *p < 0xC0)
			continue; /* continuation byte */
		out[n++] = *p < 0x80 ? *p : '?';
	}
	return n;
}

/* Width in font pixels (one blank column between glyphs). */
static int text_units(const char *s)
{
	unsigned char buf[1024];
	size_t n = text_chars(s, buf, sizeof buf);
	int w = 0;
	for (size_t i = 0; i < n; i++) {
		int a, b;
		glyph_cols(buf[i], &a, &b);
		w += b - a + 1 + (i + 1 < n);
	}
	return w;
}

static double text_width(const char *s, double scale)
{
	return text_units(s) * scale;
}

/* Area of [a0, a1] x [b0, b1] inside the unit pixel at (x, y). */
static double overlap(double a0, double a1, double b0, double b1, int x, int y)
{
	double w = fmin(a1, x + 1.0) - fmax(a0, (double)x);
	double h = fmin(b1, y + 1.0) - fmax(b0, (double)y);
	return w > 0 && h > 0 ? w * h : 0;
}

/* Render S at SCALE into a new mask whose top-left is the pixel (OX, OY)
 * relative to the text's fractional origin FX, FY (0 <= FX, FY < 1): every
 * lit font pixel is a SCALE-sized square, box filtered. */
static void text_mask(struct mask *m, const char *s, double scale, double fx, double fy)
{
	int w = (int)ceil(text_width(s, scale) + fx) + 1, h = (int)ceil(GLYPH_H * scale + fy) + 1;
	mask_init(m, w, h);
	unsigned char buf[1024];
	size_t n = text_chars(s, buf, sizeof buf);
	double pen = fx;
	for (size_t i = 0; i < n; i++) {
		const char *const *g = glyph_of(buf[i]);
		int a, b;
		glyph_cols(buf[i], &a, &b);
		for (int r = 0; r < GLYPH_H; r++)
			for (int c = a; c <= b; c++) {
				if (!glyph_on(g, c, r))
					continue;
				double x0 = pen + (c - a) * scale, x1 = x0 + scale;
				double y0 = fy + r * scale, y1 = y0 + scale;
				for (int y = (int)floor(y0); y < (int)ceil(y1) && y < h; y++)
					for (int x = (int)floor(x0); x < (int)ceil(x1) && x < w; x++) {
						float *p = &m->a[(size_t)y * (size_t)w + (size_t)x];
						*p += (float)overlap(x0, x1, y0, y1, x, y);
						if (*p > 1)
							*p = 1;
					}
			}
		pen += (b - a + 2) * scale;
	}
}

enum { ALIGN_LEFT, ALIGN_CENTER, ALIGN_RIGHT };

/* Draw S with its baseline at Y and X at its left, centre or right. */
static void draw_text(struct canvas *c, const char *s, double x, double y, double scale, int align, struct rgb col)
{
	double w = text_width(s, scale);
	if (align == ALIGN_CENTER)
		x -= w / 2;
	else if (align == ALIGN_RIGHT)
		x -= w;
	double top = y - GLYPH_BASE * scale;
	int ox = (int)floor(x), oy = (int)floor(top);
	struct mask m;
	text_mask(&m, s, scale, x - ox, top - oy);
	paint(c, &m, ox, oy, col, 1.0, 0);
	free(m.a);
}

/* Draw S turned a quarter counter-clockwise, centred on CY, its baseline
 * (now a vertical line) at X. */
static void draw_text_up(struct canvas *c, const char *s, double x, double cy, double scale, struct rgb col)
{
	double w = text_width(s, scale);
	double left = x - GLYPH_BASE * scale;
	int ox = (int)floor(left);
	struct mask m;
	/* in the mask u runs along the text, v down the glyphs; turned, mask
	 * (u, v) lands at (ox + v, y0 + m.w - 1 - u): the text starts at the
	 * bottom, CY + W / 2 */
	text_mask(&m, s, scale, 0, left - ox);
	int y0 = (int)lround(cy + w / 2) - (m.w - 1);
	paint(c, &m, ox, y0, col, 1.0, 1);
	free(m.a);
}

/* ---- axes ---- */

/* Ticks as matplotlib's MaxNLocator (nbins 9, steps 1, 2, 2.5, 5, 10)
 * chooses them for the view VMIN..VMAX; returns the count (at most 32). */
static int ticks_for(double vmin, double vmax, double *ticks, double *step_out)
{
	const int nbins = 9;
	double raw = (vmax - vmin) / nbins;
	double scale = pow(10, floor(log10(raw)));
	static const double mult[] = { 1, 2, 2.5, 5, 10, 20 };
	int k = 0;
	while (k < 5 && mult[k] * scale < raw * (1 - 1e-12))
		k++;
	for (; k >= 0; k--) {
		double step = mult[k] * scale;
		double lo = ceil(vmin / step - 1e-9), hi = floor(vmax / step + 1e-9);
		int n = (int)(hi - lo + 1);
		if (n >= 2 || k == 0) {
			if (n > 32)
				n = 32;
			for (int i = 0; i < n; i++) {
				ticks[i] = (lo + i) * step;
				if (fabs(ticks[i]) < step * 1e-9)
					ticks[i] = 0;
			}
			*step_out = step;
			return n < 0 ? 0 : n;
		}
	}
	return 0;
}

/* Labels as ScalarFormatter writes them: the same number of decimals on
 * every tick, as many as the step needs; when the largest tick's order of
 * magnitude OOM is -5 or less or 6 or more, the ticks are divided by
 * 10^OOM and "1eOOM" is written at the axis end (*OOM_OUT, else 0). */
static int axis_format(const double *ticks, int nt, double step, int *oom_out)
{
	double amax = 0;
	for (int i = 0; i < nt; i++)
		amax = fmax(amax, fabs(ticks[i]));
	int oom = amax > 0 ? (int)floor(log10(amax)) : 0;
	if (oom > -5 && oom < 6)
		oom = 0;
	*oom_out = oom;
	double s = step / pow(10, oom);
	int dec = 0;
	while (dec < 10) {
		double t = s * pow(10, dec);
		if (fabs(t - nearbyint(t)) < 1e-6 * fmax(1, t))
			break;
		dec++;
	}
	return dec;
}

static void tick_label(char *out, size_t cap, double v, int dec, int oom)
{
	snprintf(out, cap, "%.*f", dec, v / pow(10, oom));
	if (out[0] == '-' && strspn(out + 1, "0.") == strlen(out + 1))
		memmove(out, out + 1, strlen(out)); /* "-0.00" -> "0.00" */
}

/* The view of data DMIN..DMAX as matplotlib's autoscale makes it: an empty
 * range widened by 5% of the value (or to +-0.05 around zero), then 5%
 * margins on each side.  A range within 1e-12 of the values' size counts
 * as empty (the smoothing may move a constant series by an ulp). */
static void view_range(double dmin, double dmax, double *vmin, double *vmax)
{
	double big = fmax(fabs(dmin), fabs(dmax));
	if (!(dmax - dmin > big * 1e-12)) {
		if (big == 0) {
			dmin = -0.05;
			dmax = 0.05;
		} else {
			dmin -= 0.05 * fabs(dmin);
			dmax += 0.05 * fabs(dmax);
		}
	}
	double m = (dmax - dmin) * 0.05;
	*vmin = dmin - m;
	*vmax = dmax + m;
}

/* ---- the figure ---- */

#define FIG_W 640
#define FIG_H 480
#define LINE_W 2.08   /* 1.5 pt at dpi 100 */
#define TICK_LEN 5    /* 3.5 pt */
#define TICK_PAD 5    /* 3.5 pt */
#define TICK_SCALE 1.5
#define LABEL_SCALE 1.5
#define TITLE_SCALE 1.8

/* Points (in pixels) of the two curves inside the box, for the legend's
 * "best" place: fewest points covered wins, the first such place on ties. */
static long points_inside(const double *px, const double *py, size_t n, double x0, double y0, double x1,
			  double y1)
{
	long k = 0;
	for (size_t i = 0; i < n; i++) {
		if (isnan(px[i]) || isnan(py[i]))
			continue;
		if (px[i] >= x0 && px[i] <= x1 && py[i] >= y0 && py[i] <= y1)
			k++;
		/* a segment between points passing through counts too */
		if (i + 1 < n && !isnan(py[i + 1])) {
			for (int s = 1; s < 8; s++) {
				double qx = px[i] + (px[i + 1] - px[i]) * s / 8, qy = py[i] + (py[i + 1] - py[i]) * s / 8;
				if (qx >= x0 && qx <= x1 && qy >= y0 && qy <= y1) {
					k++;
					break;
				}
			}
		}
	}
	return k;
}

static void draw_curve(struct canvas *c, const double *px, const double *py, size_t n, struct rgb col,
		       double alpha)
{
	struct mask m;
	mask_init(&m, c->w, c->h);
	for (size_t i = 0; i < n; i++) {
		if (isnan(py[i]))
			continue;
		int alone = (i == 0 || isnan(py[i - 1])) && (i + 1 == n || isnan(py[i + 1]));
		if (alone) /* matplotlib draws nothing for a lone point; a dot shows it */
			mask_segment(&m, px[i], py[i], px[i], py[i], LINE_W);
		else if (i + 1 < n && !isnan(py[i + 1]))
			mask_segment(&m, px[i], py[i], px[i + 1], py[i + 1], LINE_W);
	}
	paint(c, &m, 0, 0, col, alpha, 0);
	free(m.a);
}

static void draw_figure(struct canvas *c, const char *title, const char *ylabel, const long *steps,
			const double *values, const double *smoothed, size_t n, struct lf_plot_frame *f)
{
	memset(c->px, 255, (size_t)c->w * (size_t)c->h * 3);
	/* subplot box of a default figure: left .125, right .9, bottom .11, top .88 */
	double L = 0.125 * c->w, R = 0.9 * c->w, T = (1 - 0.88) * c->h, B = (1 - 0.11) * c->h;
	double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
	for (size_t i = 0; i < n; i++) {
		double x = (double)steps[i];
		if (isfinite(values[i])) {
			xlo = fmin(xlo, x);
			xhi = fmax(xhi, x);
			ylo = fmin(ylo, values[i]);
			yhi = fmax(yhi, values[i]);
		}
		if (isfinite(smoothed[i])) {
			ylo = fmin(ylo, smoothed[i]);
			yhi = fmax(yhi, smoothed[i]);
		}
	}
	if (xlo > xhi) { /* nothing finite */
		xlo = xhi = n ? (double)steps[0] : 0;
		ylo = 0;
		yhi = 1;
	}
	double x0, x1, y0, y1;
	view_range(xlo, xhi, &x0, &x1);
	view_range(ylo, yhi, &y0, &y1);
	f->width = c->w;
	f->height = c->h;
	f->left = L;
	f->right = R;
	f->top = T;
	f->bottom = B;
	f->xmin = x0;
	f->xmax = x1;
	f->ymin = y0;
	f->ymax = y1;

	/* the curves, in pixels (NaN where a value is not finite) */
	double *px = lf_malloc((n + 1) * sizeof(double));
	double *py = lf_malloc((n + 1) * sizeof(double));
	double *ps = lf_malloc((n + 1) * sizeof(double));
	for (size_t i = 0; i < n; i++) {
		px[i] = L + ((double)steps[i] - x0) / (x1 - x0) * (R - L);
		py[i] = isfinite(values[i]) ? B - (values[i] - y0) / (y1 - y0) * (B - T) : NAN;
		ps[i] = isfinite(smoothed[i]) ? B - (smoothed[i] - y0) / (y1 - y0) * (B - T) : NAN;
	}
	draw_curve(c, px, py, n, BLUE, 0.4);
	draw_curve(c, px, ps, n, BLUE, 1.0);

	/* the frame (drawn over the curves, like matplotlib's spines) */
	int il = (int)lround(L), ir = (int)lround(R), it = (int)lround(T), ib = (int)lround(B);
	fill_rect(c, il, it, ir + 1, it + 1, BLACK);
	fill_rect(c, il, ib, ir + 1, ib + 1, BLACK);
	fill_rect(c, il, it, il + 1, ib + 1, BLACK);
	fill_rect(c, ir, it, ir + 1, ib + 1, BLACK);

	/* ticks and their labels */
	double ticks[32], step;
	char label[64];
	int oom;
	int nt = ticks_for(x0, x1, ticks, &step);
	int dec = axis_format(ticks, nt, step, &oom);
	double label_base = ib + TICK_LEN + TICK_PAD + GLYPH_BASE * TICK_SCALE;
	for (int i = 0; i < nt; i++) {
		if (ticks[i] < x0 || ticks[i] > x1)
			continue;
		int tx = (int)lround(L + (ticks[i] - x0) / (x1 - x0) * (R - L) - 0.5);
		fill_rect(c, tx, ib + 1, tx + 1, ib + 1 + TICK_LEN, BLACK);
		tick_label(label, sizeof label, ticks[i], dec, oom);
		draw_text(c, label, tx + 0.5, label_base, TICK_SCALE, ALIGN_CENTER, BLACK);
	}
	if (oom) { /* the x offset text: below the labels, at the right end */
		snprintf(label, sizeof label, "1e%d", oom);
		draw_text(c, label, R, label_base + GLYPH_H * TICK_SCALE + 2, TICK_SCALE, ALIGN_RIGHT, BLACK);
	}
	nt = ticks_for(y0, y1, ticks, &step);
	dec = axis_format(ticks, nt, step, &oom);
	double widest = 0;
	for (int i = 0; i < nt; i++) {
		if (ticks[i] < y0 || ticks[i] > y1)
			continue;
		int ty = (int)lround(B - (ticks[i] - y0) / (y1 - y0) * (B - T) - 0.5);
		fill_rect(c, il - TICK_LEN, ty, il, ty + 1, BLACK);
		tick_label(label, sizeof label, ticks[i], dec, oom);
		widest = fmax(widest, text_width(label, TICK_SCALE));
		/* digits (7 rows) centred on the tick */
		draw_text(c, label, il - TICK_LEN - TICK_PAD, ty + 0.5 + GLYPH_BASE * TICK_SCALE / 2, TICK_SCALE,
			  ALIGN_RIGHT, BLACK);
	}
	if (oom) { /* the y offset text: above the axes, at the left end */
		snprintf(label, sizeof label, "1e%d", oom);
		draw_text(c, label, L, T - 4, TICK_SCALE, ALIGN_LEFT, BLACK);
	}

	/* axis labels and title */
	double xl_base = label_base + (GLYPH_H - GLYPH_BASE) * TICK_SCALE + 5 + GLYPH_BASE * LABEL_SCALE;
	draw_text(c, "step", (L + R) / 2, xl_base, LABEL_SCALE, ALIGN_CENTER, BLACK);
	double yl_x = il - TICK_LEN - TICK_PAD - widest - 5 - (GLYPH_H - GLYPH_BASE) * LABEL_SCALE;
	if (yl_x < GLYPH_BASE * LABEL_SCALE + 2) /* keep it on the figure */
		yl_x = GLYPH_BASE * LABEL_SCALE + 2;
	draw_text_up(c, ylabel, yl_x, (T + B) / 2, LABEL_SCALE, BLACK);
	double ts = TITLE_SCALE;
	while (ts > 1.0 && text_width(title, ts) > c->w - 8)
		ts -= 0.1;
	double tx = (L + R) / 2;
	double tw = text_width(title, ts);
	if (tx - tw / 2 < 4) /* keep a long title's start on the figure */
		tx = 4 + tw / 2;
	draw_text(c, title, tx, T - 8, ts, ALIGN_CENTER, BLACK);

	/* the legend: borderpad .4 em, handle 2 em, handletextpad .8 em,
	 * labelspacing .5 em, 1 em = 10 pt = 13.9 px; .5 em from the axes */
	const double em = 13.9;
	const char *names[2] = { "original", "smoothed" };
	double textw = fmax(text_width(names[0], LABEL_SCALE), text_width(names[1], LABEL_SCALE));
	double rowh = GLYPH_H * LABEL_SCALE;
	double bw = 0.4 * em * 2 + 2 * em + 0.8 * em + textw, bh = 0.4 * em * 2 + 2 * rowh + 0.5 * em;
	double pad = 0.5 * em;
	/* matplotlib's order of places: upper right, upper left, lower left,
	 * lower right, right, center left, center right, lower center, upper
	 * center, center */
	double cand[10][2] = {
		{ R - pad - bw, T + pad },		       { L + pad, T + pad },
		{ L + pad, B - pad - bh },		       { R - pad - bw, B - pad - bh },
		{ R - pad - bw, (T + B) / 2 - bh / 2 },       { L + pad, (T + B) / 2 - bh / 2 },
		{ R - pad - bw, (T + B) / 2 - bh / 2 },       { (L + R) / 2 - bw / 2, B - pad - bh },
		{ (L + R) / 2 - bw / 2, T + pad },	       { (L + R) / 2 - bw / 2, (T + B) / 2 - bh / 2 },
	};
	int best = 0;
	long best_bad = -1;
	for (int k = 0; k < 10; k++) {
		double bx = cand[k][0], by = cand[k][1];
		long bad = points_inside(px, py, n, bx, by, bx + bw, by + bh) +
			   points_inside(px, ps, n, bx, by, bx + bw, by + bh);
		if (best_bad < 0 || bad < best_bad) {
			best = k;
			best_bad = bad;
		}
	}
	double bx = round(cand[best][0]), by = round(cand[best][1]);
	struct mask fill, edge;
	mask_init(&fill, c->w, c->h);
	mask_init(&edge, c->w, c->h);
	mask_round_rect(&fill, &edge, bx, by, bx + bw, by + bh, 0.2 * em);
	paint(c, &fill, 0, 0, WHITE, 0.8, 0);
	paint(c, &edge, 0, 0, EDGE, 0.8, 0);
	free(fill.a);
	free(edge.a);
	for (int k = 0; k < 2; k++) {
		double cy = by + 0.4 * em + k * (rowh + 0.5 * em) + GLYPH_BASE * LABEL_SCALE / 2 + 1;
		double hx0 = bx + 0.4 * em, hx1 = hx0 + 2 * em;
		struct mask m;
		mask_init(&m, c->w, c->h);
		mask_segment(&m, hx0, cy, hx1, cy, LINE_W);
		paint(c, &m, 0, 0, BLUE, k == 0 ? 0.4 : 1.0, 0);
		free(m.a);
		draw_text(c, names[k], hx1 + 0.8 * em, by + 0.4 * em + k * (rowh + 0.5 * em) + GLYPH_BASE * LABEL_SCALE,
			  LABEL_SCALE, ALIGN_LEFT, BLACK);
	}
	free(px);
	free(py);
	free(ps);
}

/* ---- PNG ---- */

struct png_err {
	char msg[200];
};

static void png_error_fn(png_structp png, png_const_charp msg)
{
	struct png_err *e = png_get_error_ptr(png);
	snprintf(e->msg, sizeof e->msg, "%s", msg);
	png_longjmp(png, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

static int write_png(const char *path, const struct canvas *c)
{
	struct lf_output o;
	if (lf_output_open(&o, path) != 0)
		return -1;
	struct png_err err = { "" };
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_error_fn, png_warn_fn);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	if (!png || !info) {
		png_destroy_write_struct(&png, NULL);
		lf_output_abort(&o);
		return lf_fail("%s: cannot start the PNG encoder", path);
	}
	png_bytep *rows = lf_malloc((size_t)c->h * sizeof(png_bytep));
	for (int y = 0; y < c->h; y++)
		rows[y] = c->px + (size_t)y * (size_t)c->w * 3;
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		free(rows);
		lf_output_abort(&o);
		return lf_fail("%s: %s", path, err.msg);
	}
	png_init_io(png, o.f);
	png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_set_pHYs(png, info, 3937, 3937, PNG_RESOLUTION_METER); /* 100 dpi */
	png_text text;
	memset(&text, 0, sizeof text);
	text.compression = PNG_TEXT_COMPRESSION_NONE;
	text.key = (png_charp) "Software";
#ifdef LF_VERSION
	text.text = (png_charp) "lf " LF_VERSION;
#else
	text.text = (png_charp) "lf";
#endif
	png_set_text(png, info, &text, 1);
	png_write_info(png, info);
	png_write_image(png, rows);
	png_write_end(png, info);
	png_destroy_write_struct(&png, &info);
	free(rows);
	if (lf_output_commit(&o) != 0)
		return -1;
	return 0;
}

/* ---- entry points ---- */

int lf_plot_loss(const char *png_path, const char *title, const char *ylabel, const long *steps,
		 const double *values, size_t n, struct lf_plot_frame *frame)
{
	if (n == 0)
		return lf_fail("%s: no points to plot", png_path);
	double *smoothed = lf_malloc(n * sizeof(double));
	lf_plot_smooth(values, smoothed, n);
	struct canvas c = { FIG_W, FIG_H, lf_malloc((size_t)FIG_W * FIG_H * 3) };
	struct lf_plot_frame f;
	draw_figure(&c, title ? title : "", ylabel ? ylabel : "", steps, values, smoothed, n, &f);
	free(smoothed);
	int rc = write_png(png_path, &c);
	free(c.px);
	if (rc == 0 && frame)
		*frame = f;
	return rc;
}

int lf_plot_key(const char *output_dir, const char *key, const long *steps, const double *values, size_t n)
{
	if (n == 0)
		return 1;
	struct lf_buf path = LF_BUF_INIT, title = LF_BUF_INIT;
	size_t dl = strlen(output_dir);
	lf_buf_addstr(&path, output_dir);
	if (dl && output_dir[dl - 1] != '/')
		lf_buf_addch(&path, '/');
	lf_buf_addstr(&path, "training_");
	for (const char *k = key; *k; k++)
		lf_buf_addch(&path, *k == '/' ? '_' : *k);
	lf_buf_addstr(&path, ".png");
	lf_buf_addf(&title, "training %s of %s", key, output_dir);
	int rc = lf_plot_loss(path.data, title.data, key, steps, values, n, NULL);
	lf_buf_free(&path);
	lf_buf_free(&title);
	return rc;
}
