#ifndef DISTRAINER_COPENBLAS_H
#define DISTRAINER_COPENBLAS_H
#include <cblas.h>
#endif
