#ifndef DISTRAINER_CPNG_H
#define DISTRAINER_CPNG_H
#include <png.h>

/* libpng's PNG_FORMAT_* values are composite macros (e.g. PNG_FORMAT_RGBA is
 * (PNG_FORMAT_RGB|PNG_FORMAT_FLAG_ALPHA)), which Swift cannot import, and the
 * PNG_IMAGE_* size helpers are function-like macros. Re-export them here as
 * static inline functions; no .c file is needed. */

static inline png_uint_32 cpng_format_gray(void) { return PNG_FORMAT_GRAY; }
static inline png_uint_32 cpng_format_ga(void) { return PNG_FORMAT_GA; }
static inline png_uint_32 cpng_format_rgb(void) { return PNG_FORMAT_RGB; }
static inline png_uint_32 cpng_format_rgba(void) { return PNG_FORMAT_RGBA; }
static inline png_uint_32 cpng_format_linear_y(void) { return PNG_FORMAT_LINEAR_Y; }
static inline png_uint_32 cpng_format_linear_rgb(void) { return PNG_FORMAT_LINEAR_RGB; }

static inline png_uint_32 cpng_format_flag_alpha(void) { return PNG_FORMAT_FLAG_ALPHA; }
static inline png_uint_32 cpng_format_flag_color(void) { return PNG_FORMAT_FLAG_COLOR; }
static inline png_uint_32 cpng_format_flag_linear(void) { return PNG_FORMAT_FLAG_LINEAR; }
static inline png_uint_32 cpng_format_flag_colormap(void) { return PNG_FORMAT_FLAG_COLORMAP; }

static inline png_uint_32 cpng_image_version(void) { return PNG_IMAGE_VERSION; }
static inline png_uint_32 cpng_image_warning(void) { return PNG_IMAGE_WARNING; }
static inline png_uint_32 cpng_image_error(void) { return PNG_IMAGE_ERROR; }
static inline png_uint_32 cpng_image_flag_16bit_srgb(void) { return PNG_IMAGE_FLAG_16BIT_sRGB; }
static inline png_uint_32 cpng_image_flag_fast(void) { return PNG_IMAGE_FLAG_FAST; }

/* Bytes needed for the decoded image in image->format with the minimum row stride. */
static inline png_alloc_size_t cpng_image_size(const png_image *image) {
    return (png_alloc_size_t)PNG_IMAGE_SIZE(*image);
}

/* An upper bound on the encoded size of image (for png_image_write_to_memory). */
static inline png_alloc_size_t cpng_png_size_max(const png_image *image) {
    return (png_alloc_size_t)PNG_IMAGE_PNG_SIZE_MAX(*image);
}

static inline const char *cpng_libpng_version(void) { return PNG_LIBPNG_VER_STRING; }

#endif
