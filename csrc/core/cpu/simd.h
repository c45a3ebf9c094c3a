// cpu/simd.h — the vector building blocks of the CPU kernels: lanes of a row walk, reductions,
// prefetches, non-temporal stores, and the short-row layout (one row per lane of a native vector:
// column loads and stores, in-register transposes, gathers).
//
// Like every header of cpu/, compiled once per instruction set inside the namespace that
// FOCAL_CPU_ISA names (cpu/kernels_<isa>.cc), so no two instruction sets share a symbol.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "cpu_vector_math.h"
#include "focal_cpu.h"

#ifndef FOCAL_CPU_ISA
#error "define FOCAL_CPU_ISA (the instruction set's namespace) before including the CPU kernels"
#endif

namespace focal {
namespace FOCAL_CPU_ISA {

// A row is walked as a bulk of whole kLanes-wide vectors (`omp simd` loops) and a tail of
// fewer than kLanes classes, loaded into a padded local chunk so that short rows (C = 10) are
// vectorised too. Sums accumulate in Acc per block of kSumBlock classes and in double across
// blocks, so a float32 row of 32000 classes keeps ~1e-7 relative accuracy.
constexpr int kLanes = 16;
constexpr int64_t kSumBlock = 512;
using RowSum = double;

template <typename Acc>
Acc quiet_nan() {
  return std::numeric_limits<Acc>::quiet_NaN();
}

// The tail z[begin, begin + count), count < kLanes, as Acc, padded with `pad`.
template <typename T, typename Acc>
void load_tail(const T* z, int64_t begin, int count, Acc pad, Acc (&v)[kLanes]) {
  for (int l = 0; l < kLanes; ++l) v[l] = l < count ? load_acc(z[begin + l]) : pad;
}

// Pairwise reduction of the kLanes lanes (16 -> 8 -> 4 -> 2 -> 1, fresh arrays: no aliasing).
template <typename V, typename Combine>
V reduce_lanes(const V (&lanes)[kLanes], Combine combine) {
  static_assert(kLanes == 16, "reduce_lanes is written for 16 lanes");
  V half[8], quarter[4], eighth[2];
  for (int l = 0; l < 8; ++l) half[l] = combine(lanes[l], lanes[l + 8]);
  for (int l = 0; l < 4; ++l) quarter[l] = combine(half[l], half[l + 4]);
  for (int l = 0; l < 2; ++l) eighth[l] = combine(quarter[l], quarter[l + 2]);
  return combine(eighth[0], eighth[1]);
}

inline int64_t bulk_classes(int64_t classes) { return classes - classes % kLanes; }

// Asks for classes [begin, end) of the next row (into L2) while this row's classes are computed:
// the loads of a row's first pass otherwise wait on memory with the arithmetic units idle. A
// prefetch past the end of the array is harmless.
template <int kLocality>  // 3: into L1, 2: into L2 (__builtin_prefetch's hint)
void prefetch_bytes(const void* start, int64_t bytes) {
  const char* p = static_cast<const char*>(start);
  for (int64_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, kLocality);
}

template <typename T>
void prefetch_next_row(const T* row, int64_t classes, int64_t begin, int64_t end) {
  prefetch_bytes<2>(row + classes + begin, (end - begin) * static_cast<int64_t>(sizeof(T)));
}

// Max of z[0, bulk) (bulk a multiple of kLanes), NaN ignored, in four independent vectors of
// lanes: with a single running vector each step would wait on the previous one.
template <typename T>
acc_t<T> bulk_max(const T* z, int64_t bulk) {
  using Acc = acc_t<T>;
  constexpr int kWide = 4 * kLanes;
  Acc lanes[kWide];
  for (int l = 0; l < kWide; ++l) lanes[l] = -std::numeric_limits<Acc>::infinity();
  int64_t c = 0;
  for (; c + kWide <= bulk; c += kWide) {
#pragma omp simd
    for (int l = 0; l < kWide; ++l) {
      const Acc v = load_acc(z[c + l]);
      lanes[l] = v > lanes[l] ? v : lanes[l];
    }
  }
  for (; c < bulk; c += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const Acc v = load_acc(z[c + l]);
      lanes[l] = v > lanes[l] ? v : lanes[l];
    }
  }
  Acc folded[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    const Acc a = lanes[l + kLanes] > lanes[l] ? lanes[l + kLanes] : lanes[l];
    const Acc b = lanes[l + 3 * kLanes] > lanes[l + 2 * kLanes] ? lanes[l + 3 * kLanes] : lanes[l + 2 * kLanes];
    folded[l] = b > a ? b : a;
  }
  return reduce_lanes(folded, [](Acc a, Acc b) { return b > a ? b : a; });
}


// Gradients of long rows in large batches are written with non-temporal stores: they bypass
// the cache, so each line is not first read for ownership. Only float32 rows of at least
// kStreamMinClasses classes in shards of at least kStreamMinBytes of gradient.
constexpr int64_t kStreamMinClasses = 256;
constexpr int64_t kStreamMinBytes = int64_t{2} << 20;

inline bool stream_gradient(int64_t classes, int64_t rows, std::size_t element_size) {
  return element_size == sizeof(float) && classes >= kStreamMinClasses &&
         rows * classes * static_cast<int64_t>(element_size) >= kStreamMinBytes;
}

// kLanes floats to a 64-byte-aligned dst with non-temporal stores (plain stores without SSE).
inline void stream_lanes(float* dst, const float (&src)[kLanes]) {
#if defined(__AVX512F__)
  _mm512_stream_ps(dst, _mm512_loadu_ps(src));
#elif defined(__AVX__)
  _mm256_stream_ps(dst, _mm256_loadu_ps(src));
  _mm256_stream_ps(dst + 8, _mm256_loadu_ps(src + 8));
#elif defined(__SSE2__)
  for (int k = 0; k < kLanes; k += 4) _mm_stream_ps(dst + k, _mm_loadu_ps(src + k));
#else
  for (int k = 0; k < kLanes; ++k) dst[k] = src[k];
#endif
}

// Orders this thread's non-temporal stores before whatever reads the gradient next.
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// alpha for every class (or column) in the accumulation type: contiguous loads in the loops.
template <typename Acc>
std::vector<Acc> expand_alpha(const double* alpha, int64_t alpha_size, int64_t classes) {
  std::vector<Acc> values(static_cast<size_t>(classes > 0 ? classes : 1), Acc(1));
  for (int64_t c = 0; alpha != nullptr && c < classes; ++c) {
    values[c] = static_cast<Acc>(alpha[alpha_size == 1 ? 0 : c]);
  }
  return values;
}

// alpha[0, width) repeated over `count` values: per-column weights for a run of whole rows.
template <typename Acc>
std::vector<Acc> repeat_alpha(const std::vector<Acc>& alpha, int64_t width, int64_t count) {
  std::vector<Acc> repeated(static_cast<std::size_t>(count));
  for (std::size_t j = 0; j < repeated.size(); ++j) repeated[j] = alpha[j % width];
  return repeated;
}

// Short rows (C <= kShortRow): kRowLanes rows at a time, one row per lane of a native vector
// (RowVec, a GCC/Clang vector extension type), so the per-row work (max, Σ exp, log1p, the focal
// term, the divisions) is vectorised too. Float accumulation only: float64 rows take the per-row
// loops.
constexpr int64_t kShortRow = kShortRowMaxClasses;
#if defined(__AVX512F__)
constexpr int kRowLanes = 16;
#elif defined(__AVX2__)
constexpr int kRowLanes = 8;
#else
constexpr int kRowLanes = 4;
#endif
using RowVec = FloatVector<kRowLanes>::type;
using RowInts = FloatVector<kRowLanes>::ints;

template <typename T>
constexpr bool kHasShortRows = std::is_same_v<acc_t<T>, float>;

inline RowInts lane_ids() {
  RowInts ids;
  for (int l = 0; l < kRowLanes; ++l) ids[l] = l;
  return ids;
}

inline RowVec load_row_vec(const float* values) {
  RowVec v;
  std::memcpy(&v, values, sizeof(v));
  return v;
}

inline void store_row_vec(const RowVec& v, float* out) { std::memcpy(out, &v, sizeof(v)); }

// Lane l of the result: v[index[l]] (one permute instruction with AVX-512 and AVX2).
inline RowVec permute_lanes(const RowVec& v, const RowInts& index) {
#if defined(__clang__)  // no variable-index shuffle builtin
  RowVec out;
  for (int l = 0; l < kRowLanes; ++l) out[l] = v[index[l]];
  return out;
#else
  return __builtin_shuffle(v, index);
#endif
}

// Lane l: base[index[l]] as float (one gather where the instruction set has it).
template <typename T>
RowVec gather_lanes(const T* base, const RowInts& index) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    return __builtin_bit_cast(RowVec, _mm512_i32gather_ps(__builtin_bit_cast(__m512i, index), base, 4));
  }
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    return __builtin_bit_cast(RowVec, _mm256_i32gather_ps(base, __builtin_bit_cast(__m256i, index), 4));
  }
#endif
  RowVec v;
  for (int l = 0; l < kRowLanes; ++l) v[l] = load_acc(base[index[l]]);
  return v;
}

#if defined(__AVX512F__)
// In-register transpose of a 16 x 16 float tile: afterwards rows[k] lane l is what rows[l] lane k was.
inline void transpose_16x16(__m512 (&rows)[16]) {
  __m512 pairs[16];
  for (int i = 0; i < 8; ++i) {  // interleave rows 2i and 2i+1
    pairs[2 * i] = _mm512_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
    pairs[2 * i + 1] = _mm512_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
  }
  __m512 quads[16];  // quads[4i + k], 128-bit block j: column 4j + k of rows 4i .. 4i+3
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(pairs[4 * i]), b = _mm512_castps_pd(pairs[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(pairs[4 * i + 1]), d = _mm512_castps_pd(pairs[4 * i + 3]);
    quads[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    quads[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    quads[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    quads[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int k = 0; k < 4; ++k) {  // a 4 x 4 transpose of 128-bit blocks
    const __m512 low01 = _mm512_shuffle_f32x4(quads[k], quads[4 + k], 0x44);
    const __m512 high01 = _mm512_shuffle_f32x4(quads[k], quads[4 + k], 0xEE);
    const __m512 low23 = _mm512_shuffle_f32x4(quads[8 + k], quads[12 + k], 0x44);
    const __m512 high23 = _mm512_shuffle_f32x4(quads[8 + k], quads[12 + k], 0xEE);
    rows[k] = _mm512_shuffle_f32x4(low01, low23, 0x88);
    rows[4 + k] = _mm512_shuffle_f32x4(low01, low23, 0xDD);
    rows[8 + k] = _mm512_shuffle_f32x4(high01, high23, 0x88);
    rows[12 + k] = _mm512_shuffle_f32x4(high01, high23, 0xDD);
  }
}
#elif defined(__AVX2__)
// In-register transpose of an 8 x 8 float tile: afterwards rows[k] lane l is what rows[l] lane k was.
inline void transpose_8x8(__m256 (&rows)[8]) {
  __m256 pairs[8];  // pairs[2i], pairs[2i+1]: rows 2i and 2i+1 interleaved (low, high halves of each 128 bits)
  for (int i = 0; i < 4; ++i) {
    pairs[2 * i] = _mm256_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
    pairs[2 * i + 1] = _mm256_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
  }
  __m256 quads[8];  // quads[4i + k]: columns k and k + 4 of rows 4i .. 4i+3 (one per 128-bit half)
  for (int i = 0; i < 2; ++i) {
    quads[4 * i] = _mm256_shuffle_ps(pairs[4 * i], pairs[4 * i + 2], 0x44);
    quads[4 * i + 1] = _mm256_shuffle_ps(pairs[4 * i], pairs[4 * i + 2], 0xEE);
    quads[4 * i + 2] = _mm256_shuffle_ps(pairs[4 * i + 1], pairs[4 * i + 3], 0x44);
    quads[4 * i + 3] = _mm256_shuffle_ps(pairs[4 * i + 1], pairs[4 * i + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    rows[k] = _mm256_permute2f128_ps(quads[k], quads[4 + k], 0x20);
    rows[4 + k] = _mm256_permute2f128_ps(quads[k], quads[4 + k], 0x31);
  }
}

// Lanes [0, count) of a mask for _mm256_maskload_ps / _mm256_maskstore_ps.
inline __m256i first_lanes_mask(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// The first `classes` columns of kRowLanes consecutive rows of `classes` values (row-major from
// `rows`), one row per lane: columns[c] lane l = rows[l · classes + c]. For float values, tiles of
// row loads (masked at a row's end) turned by an in-register transpose: 16 x 16 with AVX-512, 8 x 8
// with AVX2 (vgatherdps, one load per lane, is slow on AMD cores); otherwise one load per value.
// Only data moves, so every path gives the same bits. A tile is stored whole (columns past
// `classes` get zeros): `columns` has room for kShortRow, and a fixed count of vector stores
// beats the variable-length copy the compiler would make of the first `classes - first`.
template <typename T>
void load_columns(const T* rows, int64_t classes, RowVec (&columns)[kShortRow]) {
  static_assert(kShortRow % 16 == 0, "whole 16- and 8-wide tiles fit in columns");
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t first = 0; first < classes; first += 16) {
      const int count = static_cast<int>(std::min<int64_t>(16, classes - first));
      const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1u);
      __m512 tile[16];
      for (int l = 0; l < 16; ++l) tile[l] = _mm512_maskz_loadu_ps(mask, rows + l * classes + first);
      transpose_16x16(tile);
      for (int k = 0; k < 16; ++k) columns[first + k] = __builtin_bit_cast(RowVec, tile[k]);
    }
    return;
  }
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t first = 0; first < classes; first += 8) {
      const int count = static_cast<int>(std::min<int64_t>(8, classes - first));
      __m256 tile[8];
      if (count == 8) {
        for (int l = 0; l < 8; ++l) tile[l] = _mm256_loadu_ps(rows + l * classes + first);
      } else {
        const __m256i mask = first_lanes_mask(count);
        for (int l = 0; l < 8; ++l) tile[l] = _mm256_maskload_ps(rows + l * classes + first, mask);
      }
      transpose_8x8(tile);
      for (int k = 0; k < 8; ++k) columns[first + k] = __builtin_bit_cast(RowVec, tile[k]);
    }
    return;
  }
#endif
  const RowInts row_starts = lane_ids() * static_cast<int32_t>(classes);
  for (int64_t c = 0; c < classes; ++c) columns[c] = gather_lanes(rows, row_starts + static_cast<int32_t>(c));
}

// The inverse of load_columns: rows[l · classes + c] = columns[c] lane l (the same tiles, stored).
template <typename T>
void store_columns(const RowVec* columns, int64_t classes, T* rows) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t first = 0; first < classes; first += 16) {
      const int count = static_cast<int>(std::min<int64_t>(16, classes - first));
      const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1u);
      __m512 tile[16];
      for (int k = 0; k < 16; ++k) {
        tile[k] = k < count ? __builtin_bit_cast(__m512, columns[first + k]) : _mm512_setzero_ps();
      }
      transpose_16x16(tile);
      for (int l = 0; l < 16; ++l) _mm512_mask_storeu_ps(rows + l * classes + first, mask, tile[l]);
    }
    return;
  }
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t first = 0; first < classes; first += 8) {
      const int count = static_cast<int>(std::min<int64_t>(8, classes - first));
      __m256 tile[8];
      for (int k = 0; k < 8; ++k) {
        tile[k] = k < count ? __builtin_bit_cast(__m256, columns[first + k]) : _mm256_setzero_ps();
      }
      transpose_8x8(tile);
      if (count == 8) {
        for (int l = 0; l < 8; ++l) _mm256_storeu_ps(rows + l * classes + first, tile[l]);
      } else {
        const __m256i mask = first_lanes_mask(count);
        for (int l = 0; l < 8; ++l) _mm256_maskstore_ps(rows + l * classes + first, mask, tile[l]);
      }
    }
    return;
  }
#endif
  for (int64_t c = 0; c < classes; ++c) {
    for (int l = 0; l < kRowLanes; ++l) store_from_acc(columns[c][l], rows + l * classes + c);
  }
}

// Asks for the block of short rows kPrefetchBlocks blocks after `block` (kRowLanes · C values):
// the hardware prefetcher alone leaves these loops waiting on memory. A prefetch past the end of
// the array is harmless.
constexpr int kPrefetchBlocks = 4;
template <typename T>
void prefetch_block_ahead(const T* block, int64_t classes) {
  const int64_t values = kRowLanes * classes;
  prefetch_bytes<3>(block + kPrefetchBlocks * values, values * static_cast<int64_t>(sizeof(T)));
}

// kRowLanes consecutive values of any element type as floats, and back.
template <typename T>
RowVec load_lanes(const T* values) {
  if constexpr (std::is_same_v<T, float>) return load_row_vec(values);
  RowVec v;
  for (int l = 0; l < kRowLanes; ++l) v[l] = load_acc(values[l]);
  return v;
}

template <typename T>
void store_lanes(const RowVec& v, T* out) {
  if constexpr (std::is_same_v<T, float>) return store_row_vec(v, out);
  for (int l = 0; l < kRowLanes; ++l) store_from_acc(v[l], out + l);
}


// Up to kRowLanes rows of `width` values copied into a whole block, zeros after them. A block
// that is partial (the last rows of a range) or holds rows that are not computed runs the same
// vector code on this copy as a full block in place, so a row's results are the same bits
// wherever it sits in the batch and however the batch is split over threads.
template <typename T>
struct PaddedRows {
  T values[kRowLanes * kShortRow];
  PaddedRows(const T* rows, int64_t count, int64_t width) {
    std::memset(values, 0, sizeof(values));
    if (count * width > 0) std::memcpy(values, rows, static_cast<std::size_t>(count * width) * sizeof(T));
  }
};


}  // namespace FOCAL_CPU_ISA
}  // namespace focal
