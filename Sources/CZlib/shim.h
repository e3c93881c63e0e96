// zlib, for the deflated histograms of HdrHistogram interval logs (ZeroCopyLoad). Debian/Ubuntu: zlib1g-dev.
#include <zlib.h>
