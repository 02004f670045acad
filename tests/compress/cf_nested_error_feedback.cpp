// error_feedback wraps a compressor, not another error_feedback.
#include <chorus/compress/compress.hpp>

int main() {
  chorus::compress::residual<float> a, b;
#ifdef CHORUS_COMPILE_FAIL_CONTROL
  chorus::compress::error_feedback ef{chorus::compress::top_k{}, a};
  (void)b;
#else
  chorus::compress::error_feedback ef{
      chorus::compress::error_feedback{chorus::compress::top_k{}, a}, b};
#endif
  (void)ef;
}
