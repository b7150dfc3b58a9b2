/* Runs interleaved float samples through the eye stage of the mfr-eeg C ABI in chunks of
 * pseudo-random sizes; used by capi/tests/c_program.rs, which compares the output with Rust's.
 *
 * usage: eye IN.f32 FRAMES SFREQ OUT.f32   (9 channels: Fp1 Fp2 F7 F8 C3 C4 O1 O2 VEOG) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mfr_eeg.h"

#define CHECK(call)                                                        \
  do {                                                                     \
    mfr_status s_ = (call);                                                \
    if (s_ != MFR_OK) {                                                    \
      fprintf(stderr, "%s failed (%d): %s\n", #call, (int)s_,             \
              mfr_last_error_message());                                   \
      return 1;                                                            \
    }                                                                      \
  } while (0)

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s IN FRAMES SFREQ OUT\n", argv[0]);
    return 2;
  }
  const char *names[] = {"Fp1", "Fp2", "F7", "F8", "C3", "C4", "O1", "O2", "VEOG"};
  const size_t channels = 9;
  size_t frames = strtoul(argv[2], NULL, 10);
  double sfreq = strtod(argv[3], NULL);
  float *in = malloc(channels * frames * sizeof(float));
  float *out = malloc(channels * frames * sizeof(float));
  FILE *f = fopen(argv[1], "rb");
  if (!f || fread(in, sizeof(float), channels * frames, f) != channels * frames) {
    fprintf(stderr, "cannot read the input\n");
    return 1;
  }
  fclose(f);

  /* A montage with neither EOG nor frontal channels is refused with a message. */
  const char *back[] = {"C3", "C4"};
  mfr_eye *none = NULL;
  mfr_status s = mfr_eye_new(back, 2, sfreq, NULL, 0, &none);
  printf("no references: status %d, message: %s\n", (int)s, mfr_last_error_message());

  mfr_eye *e = NULL;
  CHECK(mfr_eye_new(names, channels, sfreq, NULL, 0, &e));
  size_t lat = mfr_eye_latency(e), got = 0, rel = 0, at = 0;
  float *chunk = malloc((300 + lat) * channels * sizeof(float));
  unsigned lcg = 7;
  while (at < frames) {
    lcg = lcg * 1664525u + 1013904223u;
    size_t n = (lcg >> 8) % 300;
    if (n > frames - at) n = frames - at;
    CHECK(mfr_eye_push(e, in + at * channels, n, chunk, n, &rel));
    memcpy(out + got * channels, chunk, rel * channels * sizeof(float));
    got += rel;
    at += n;
  }
  CHECK(mfr_eye_finish(e, chunk, lat, &rel));
  memcpy(out + got * channels, chunk, rel * channels * sizeof(float));
  got += rel;
  printf("eye stage: latency %zu frames, %zu frames out, active %d\n", lat, got,
         (int)mfr_eye_active(e));
  mfr_eye_free(e);
  f = fopen(argv[4], "wb");
  if (!f || fwrite(out, sizeof(float), channels * got, f) != channels * got) return 1;
  fclose(f);
  free(chunk);
  free(in);
  free(out);
  return got == frames ? 0 : 1;
}
