// safetensors reading and writing, without torch.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"k": "v"}}, then the data buffer; offsets are relative to
// the buffer start. Reading memory-maps the file and hands out pointers into
// the mapping, so an 8B model is never copied twice in RAM. The header parser
// is a pure function of bytes (fuzzed in issue 9) and rejects: a length beyond
// the file, invalid JSON, unknown dtypes, negative or overflowing shapes,
// offsets that exceed the buffer, disagree with dtype x shape, or overlap.
// Writing goes through a temp file + rename; sharded checkpoints write their
// index (model.safetensors.index.json) last, so a crash leaves no index that
// points at missing shards.
#ifndef FOAK_WORKER_MODEL_SAFETENSORS_H_
#define FOAK_WORKER_MODEL_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace foak {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" -> kF32 etc.; INVALID_ARGUMENT listing the supported names otherwise.
absl::StatusOr<DType> DTypeFromName(std::string_view name);
std::string_view DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets into the data buffer
  uint64_t end = 0;
  int64_t NumElements() const;
  uint64_t NumBytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + N: where the data buffer starts in the file
};

// Parses and validates a whole file's bytes' header (`file_bytes` may be only a
// prefix of the file; `file_size` is the full size). `source` names the file
// in errors.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view file_bytes,
                                                         uint64_t file_size,
                                                         const std::string& source);

// A read-only, memory-mapped safetensors file.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // nullptr when absent.
  const TensorInfo* Find(std::string_view name) const;
  // Pointer to the tensor's bytes inside the mapping (valid while *this lives).
  const void* Data(const TensorInfo& info) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  SafetensorsHeader header_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
};

// A tensor to write: a borrowed pointer to contiguous little-endian data.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  uint64_t num_bytes = 0;  // must equal dtype size x elements
};

// Writes one file atomically (temp + fsync + rename). Tensors are laid out in
// the given order; the JSON header is padded with spaces to a multiple of 8
// bytes, as the reference writer does. Names must be unique.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorView>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// A model folder's weights: model.safetensors, or the shards listed in
// model.safetensors.index.json ("weight_map": name -> shard file).
class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& model_dir);
  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  // NOT_FOUND naming the tensor and the file(s) searched when absent.
  absl::StatusOr<Entry> Find(std::string_view name) const;
  std::vector<std::string> TensorNames() const;  // sorted

 private:
  std::string model_dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry, std::less<>> index_;
};

// Writes `tensors` into `model_dir`: a single model.safetensors when the total
// is at most `max_shard_bytes`, else model-0000i-of-0000n.safetensors shards and
// model.safetensors.index.json (metadata.total_size + weight_map), as
// transformers' save_pretrained does. Stale shards/index from an earlier save
// with a different layout are removed after the new files are in place.
absl::Status WriteSafetensorsCheckpoint(const std::string& model_dir,
                                        const std::vector<TensorView>& tensors,
                                        uint64_t max_shard_bytes,
                                        const std::map<std::string, std::string>& metadata = {
                                            {"format", "pt"}});

}  // namespace foak

#endif  // FOAK_WORKER_MODEL_SAFETENSORS_H_
