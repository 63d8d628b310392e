// ShuffleBuffer: a bounded-memory, seeded shuffle for streamed datasets (the
// same idea as tf.data's shuffle(buffer_size)). The buffer fills with the
// first `capacity` items; after that every pushed item replaces a uniformly
// chosen buffered item, which is emitted. When the input ends the remaining
// items are emitted in random order. With capacity >= the number of items this
// is a full uniform shuffle; capacity <= 1 keeps the input order.
//
// Determinism: the generator is std::mt19937_64, whose output sequence the C++
// standard fixes, and indices are drawn by rejection sampling rather than
// std::uniform_int_distribution (whose algorithm differs between standard
// libraries), so a seed gives the same order on every platform.
#ifndef FOAK_WORKER_DATA_SHUFFLE_BUFFER_H_
#define FOAK_WORKER_DATA_SHUFFLE_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <utility>
#include <vector>

namespace foak {

// A uniform integer in [0, n), n >= 1, the same on every platform.
inline uint64_t UniformIndex(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // multiple of n
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

// Mixes a base seed with a stream number (e.g. the epoch) into an independent
// seed (SplitMix64's finaliser).
inline uint64_t MixSeed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

template <typename T>
class ShuffleBuffer {
 public:
  ShuffleBuffer(size_t capacity, uint64_t seed) : capacity_(capacity), rng_(seed) {
    buffer_.reserve(capacity_ < 4096 ? capacity_ : 4096);
  }

  // Adds `item`; returns an item to emit once the buffer is full.
  std::optional<T> Push(T item) {
    if (capacity_ <= 1) return item;
    if (buffer_.size() < capacity_) {
      buffer_.push_back(std::move(item));
      return std::nullopt;
    }
    const size_t i = static_cast<size_t>(UniformIndex(rng_, buffer_.size()));
    T out = std::move(buffer_[i]);
    buffer_[i] = std::move(item);
    return out;
  }

  // After the input ended: a random remaining item, or nullopt when empty.
  std::optional<T> Pop() {
    if (buffer_.empty()) return std::nullopt;
    const size_t i = static_cast<size_t>(UniformIndex(rng_, buffer_.size()));
    T out = std::move(buffer_[i]);
    buffer_[i] = std::move(buffer_.back());
    buffer_.pop_back();
    return out;
  }

  size_t size() const { return buffer_.size(); }

 private:
  size_t capacity_;
  std::mt19937_64 rng_;
  std::vector<T> buffer_;
};

}  // namespace foak

#endif  // FOAK_WORKER_DATA_SHUFFLE_BUFFER_H_
