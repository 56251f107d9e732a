/* Lamping & Veach 2014, Figure 1 (C++ reference transcribed to C). */
#include <stdint.h>
#include <stdio.h>
static int32_t JumpConsistentHash(uint64_t key, int32_t num_buckets) {
  int64_t b = -1, j = 0;
  while (j < num_buckets) {
    b = j;
    key = key * 2862933555777941757ULL + 1;
    j = (b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1));
  }
  return b;
}
static uint64_t sm(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
int main(void) {
  uint64_t keys[64] = {0, 1, 2, 0xdeadbeefULL, 0x0ddc0ffeebadf00dULL, 0xffffffffffffffffULL, 0x8000000000000000ULL};
  int nk = 7;
  uint64_t s = 42;
  while (nk < 64) keys[nk++] = sm(&s);
  int32_t buckets[] = {1, 2, 3, 4, 5, 7, 8, 10, 16, 31, 100, 1000, 1024, 65535, 65536, 1000003, 1 << 24, 2147483647};
  int nb = sizeof buckets / sizeof buckets[0];
  for (int i = 0; i < nk; i++)
    for (int k = 0; k < nb; k++)
      printf("%llu %d %d\n", (unsigned long long)keys[i], buckets[k], JumpConsistentHash(keys[i], buckets[k]));
  return 0;
}
