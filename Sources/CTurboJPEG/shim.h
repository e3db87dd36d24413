#ifndef DISTRAINER_CTURBOJPEG_H
#define DISTRAINER_CTURBOJPEG_H
#include <turbojpeg.h>
#endif
