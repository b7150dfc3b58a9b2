/* Streams raw interleaved float samples through the mfr-eeg C ABI and denoises the same data
 * offline; used by capi/tests/c_program.rs, which compares both outputs with Rust's.
 *
 * usage: stream MODEL IN.f32 CHANNELS FRAMES SFREQ STREAM_OUT.f32 OFFLINE_OUT.f32 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mfr_eeg.h"

static void *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc(n > 0 ? (size_t)n : 1);
  *len = fread(buf, 1, (size_t)n, f);
  fclose(f);
  return buf;
}

static int write_file(const char *path, const float *x, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return 1;
  size_t w = fwrite(x, sizeof(float), n, f);
  fclose(f);
  return w != n;
}

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
  if (argc != 8) {
    fprintf(stderr, "usage: %s MODEL IN CHANNELS FRAMES SFREQ STREAM_OUT OFFLINE_OUT\n", argv[0]);
    return 2;
  }
  size_t channels = strtoul(argv[3], NULL, 10), frames = strtoul(argv[4], NULL, 10);
  double sfreq = strtod(argv[5], NULL);
  size_t model_len = 0, in_len = 0;
  uint8_t *model_bytes = read_file(argv[1], &model_len);
  float *in = read_file(argv[2], &in_len);
  if (!model_bytes || !in || in_len != channels * frames * sizeof(float)) {
    fprintf(stderr, "cannot read the model or the input\n");
    return 1;
  }

  /* Errors come back as codes with a message. */
  mfr_model *bad = NULL;
  mfr_status s = mfr_model_from_bytes(model_bytes, 10, &bad);
  printf("truncated model: status %d, message: %s\n", (int)s, mfr_last_error_message());

  mfr_model *model = NULL;
  CHECK(mfr_model_from_bytes(model_bytes, model_len, &model));
  free(model_bytes); /* the handle holds its own copy */
  mfr_model_info info;
  CHECK(mfr_model_get_info(model, &info));
  printf("model: window %zu, hop %zu, k %zu of %zu, %g Hz, %s taper", info.d_in, info.hop,
         info.k, info.d_sae, (double)info.sample_rate_hz,
         info.ola == MFR_OLA_SINE ? "sine" : "Hann");
  if (info.front_width > 0) {
    printf(", front end %zux%zuk%zu", info.front_width, info.front_depth, info.front_kernel);
  } else {
    printf(", no front end");
  }
  if (info.blend_hi > 0) {
    printf(", correction gate %g..%g\n", (double)info.blend_lo, (double)info.blend_hi);
  } else {
    printf(", no correction gate\n");
  }

  /* Streaming in chunks of pseudo-random sizes (a fixed LCG, so the run is reproducible). */
  mfr_streamer *st = NULL;
  CHECK(mfr_streamer_new(model, channels, 0, &st));
  printf("latency: %zu samples\n", mfr_streamer_latency(st));
  float *out = malloc(channels * frames * sizeof(float));
  uint32_t lcg = 12345;
  size_t at = 0, calls = 0;
  while (at < frames) {
    lcg = lcg * 1664525u + 1013904223u;
    size_t n = 1 + (lcg >> 8) % 97;
    if (n > frames - at) n = frames - at;
    CHECK(mfr_streamer_push(st, in + at * channels, out + at * channels, n));
    at += n;
    calls++;
  }
  printf("streamed %zu frames in %zu calls\n", frames, calls);
  mfr_streamer_free(st);
  if (write_file(argv[6], out, channels * frames)) return 1;

  /* Offline, channel-major. */
  for (size_t c = 0; c < channels; c++)
    for (size_t t = 0; t < frames; t++) out[c * frames + t] = in[t * channels + c];
  mfr_denoise_options opts = mfr_denoise_options_default();
  CHECK(mfr_denoise_in_place(model, out, channels, frames, sfreq, &opts));
  if (write_file(argv[7], out, channels * frames)) return 1;

  /* The same pipeline fed in chunks: released frames, concatenated with finish(), must equal
   * the offline result just computed (channel-major in `out`) bit for bit. */
  mfr_stream *ps = NULL;
  CHECK(mfr_stream_new(model, channels, sfreq, &opts, 0.0, &ps));
  size_t plat = mfr_stream_latency(ps);
  size_t cap = 200 + plat;
  float *chunk_out = malloc(cap * channels * sizeof(float));
  float *piped = malloc(channels * frames * sizeof(float));
  size_t got = 0, rel = 0;
  at = 0;
  calls = 0;
  while (at < frames) {
    lcg = lcg * 1664525u + 1013904223u;
    size_t n = (lcg >> 8) % 200; /* empty pushes included */
    if (n > frames - at) n = frames - at;
    CHECK(mfr_stream_push(ps, in + at * channels, n, chunk_out, cap, &rel));
    memcpy(piped + got * channels, chunk_out, rel * channels * sizeof(float));
    got += rel;
    at += n;
    calls++;
  }
  s = mfr_stream_push(ps, in, 10, chunk_out, 10, &rel);
  printf("small output buffer: status %d, message: %s\n", (int)s, mfr_last_error_message());
  CHECK(mfr_stream_finish(ps, chunk_out, cap, &rel));
  memcpy(piped + got * channels, chunk_out, rel * channels * sizeof(float));
  got += rel;
  size_t differ = got == frames ? 0 : 1;
  for (size_t c = 0; c < channels && !differ; c++)
    for (size_t t = 0; t < frames; t++)
      if (memcmp(&piped[t * channels + c], &out[c * frames + t], sizeof(float)) != 0) differ++;
  printf("pipeline stream: latency %zu samples, %zu frames in %zu calls, %s offline\n", plat,
         got, calls, differ ? "differs from" : "equal to");
  mfr_stream_free(ps);
  free(piped);
  free(chunk_out);

  opts.bandpass_low_hz = 40;
  opts.bandpass_high_hz = 1;
  s = mfr_denoise_in_place(model, out, channels, frames, sfreq, &opts);
  printf("bad band-pass: status %d, message: %s\n", (int)s, mfr_last_error_message());

  mfr_model_free(model);
  free(out);
  free(in);
  return 0;
}
