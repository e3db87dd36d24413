#ifndef DISTRAINER_CCURL_H
#define DISTRAINER_CCURL_H
#include <curl/curl.h>
#endif
