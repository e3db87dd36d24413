#ifndef DISTRAINER_CTURBOJPEG_H
#define DISTRAINER_CTURBOJPEG_H
#include <turbojpeg.h>

/* TJFLAG_* are plain integer macros and import; these name the combinations we use. */
static inline int ctj_flag_stop_on_warning(void) { return TJFLAG_STOPONWARNING; }
static inline int ctj_flag_accurate_dct(void) { return TJFLAG_ACCURATEDCT; }

#endif
