#ifndef DISTRAINER_CZLIB_H
#define DISTRAINER_CZLIB_H
#include <zlib.h>
#endif
