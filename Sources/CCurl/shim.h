#ifndef DISTRAINER_CCURL_H
#define DISTRAINER_CCURL_H
#include <curl/curl.h>

/* curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt are variadic, which Swift cannot
 * call. One typed wrapper per argument type; no .c file is needed. Composite macros that do not
 * import (CURL_GLOBAL_DEFAULT) are re-exported as functions too. */

typedef size_t (*ccurl_data_callback)(char *data, size_t size, size_t nmemb, void *userdata);

static inline CURLcode ccurl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
/* CURLOPT_WRITEFUNCTION / CURLOPT_HEADERFUNCTION */
static inline CURLcode ccurl_setopt_data_callback(CURL *h, CURLoption o, ccurl_data_callback f) { return curl_easy_setopt(h, o, f); }

static inline CURLcode ccurl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ccurl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ccurl_getinfo_pointer(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }

static inline CURLMcode ccurl_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }

static inline long ccurl_global_default(void) { return CURL_GLOBAL_DEFAULT; }

/* The easy handle and result of a finished transfer from curl_multi_info_read (the result sits
 * in a union, which Swift imports awkwardly). Returns 0 when the message is not CURLMSG_DONE. */
static inline int ccurl_msg_done(CURLMsg *m, CURL **easy, CURLcode *result) {
    if (m == NULL || m->msg != CURLMSG_DONE) return 0;
    *easy = m->easy_handle;
    *result = m->data.result;
    return 1;
}

#endif
