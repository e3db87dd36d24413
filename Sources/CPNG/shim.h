#ifndef DISTRAINER_CPNG_H
#define DISTRAINER_CPNG_H
#include <png.h>
#endif
