// safetensors reading (mmap) and writing (streamed, temp file + rename).
//
// The header parser treats its input as hostile: checkpoints come from users and
// the Hub, and a bad offset would otherwise become an out-of-bounds read deep
// inside a copy into a tensor. Every check happens before any pointer into the
// data buffer is handed out, in 64-bit arithmetic with explicit overflow tests.
// We are as strict as the reference reader about sizes and overlaps, and more
// lenient in one place: unused gaps between tensors (or trailing bytes) are
// accepted, since they cannot make a read go out of bounds.
//
// The writer streams tensor bytes straight from the caller's buffers (an 8B
// model is 16 GB; it is never assembled in memory) into "<path>.tmp.<pid>",
// fsyncs, renames, then fsyncs the folder.
#include "worker/model/safetensors.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference reader's limit
constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8}, {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2}, {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Element count with overflow detection; false when it does not fit in int64.
bool CheckedNumElements(const std::vector<int64_t>& shape, int64_t* out) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) return false;
  }
  *out = n;
  return true;
}

// A JSON integer in [0, INT64_MAX]; false for floats, negatives and bigger values.
bool NonNegativeInt64(const Json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = v.get<int64_t>();
    return true;
  }
  return false;
}

absl::Status ParseTensorEntry(const std::string& name, const Json& entry, uint64_t buffer_size,
                              const std::string& source, TensorInfo* info) {
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": tensor '", name, "': ", what));
  };
  if (!entry.is_object()) {
    return error(absl::StrCat("entry = ", entry.dump(),
                              " must be an object with dtype, shape and data_offsets"));
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) return error(absl::StrCat("missing '", key, "'"));
  }
  const Json& dtype = entry["dtype"];
  if (!dtype.is_string()) return error(absl::StrCat("dtype = ", dtype.dump(), " must be a string"));
  absl::StatusOr<DType> parsed = DTypeFromName(dtype.get<std::string>());
  if (!parsed.ok()) return error(std::string(parsed.status().message()));
  info->name = name;
  info->dtype = *parsed;

  const Json& shape = entry["shape"];
  if (!shape.is_array()) {
    return error(absl::StrCat("shape = ", shape.dump(), " must be a list of non-negative integers"));
  }
  info->shape.clear();
  for (const Json& d : shape) {
    int64_t dim = 0;
    if (!NonNegativeInt64(d, &dim)) {
      return error(absl::StrCat("shape = ", shape.dump(), " has dimension ", d.dump(),
                                "; dimensions must be non-negative integers"));
    }
    info->shape.push_back(dim);
  }
  int64_t numel = 0;
  uint64_t needed = 0;
  if (!CheckedNumElements(info->shape, &numel) ||
      __builtin_mul_overflow(static_cast<uint64_t>(numel), DTypeSize(info->dtype), &needed)) {
    return error(absl::StrCat("shape ", ShapeString(info->shape),
                              " has more elements than fit in 64 bits"));
  }

  const Json& offsets = entry["data_offsets"];
  int64_t begin = 0, end = 0;
  if (!offsets.is_array() || offsets.size() != 2 || !NonNegativeInt64(offsets[0], &begin) ||
      !NonNegativeInt64(offsets[1], &end)) {
    return error(absl::StrCat("data_offsets = ", offsets.dump(),
                              " must be [begin, end] with non-negative integers"));
  }
  info->begin = static_cast<uint64_t>(begin);
  info->end = static_cast<uint64_t>(end);
  std::string where = absl::StrCat("data_offsets [", begin, ", ", end, "]");
  if (info->begin > info->end) return error(absl::StrCat(where, ": begin is after end"));
  if (info->end > buffer_size) {
    return error(absl::StrCat(where, " end past the data buffer of ", buffer_size,
                              " bytes (file truncated?)"));
  }
  if (info->end - info->begin != needed) {
    return error(absl::StrCat(where, " hold ", info->end - info->begin, " bytes but dtype ",
                              std::string(DTypeName(info->dtype)), " x shape ", ShapeString(info->shape),
                              " needs ", needed));
  }
  return absl::OkStatus();
}

// Checks the tensors to write: unique names, sizes that match dtype x shape.
absl::Status ValidateViews(const std::vector<TensorView>& tensors, const std::string& path) {
  std::set<std::string> seen;
  for (const TensorView& t : tensors) {
    auto error = [&](const std::string& what) {
      return absl::InvalidArgumentError(
          absl::StrCat("writing ", path, ": tensor '", t.name, "': ", what));
    };
    if (t.name.empty() || t.name == "__metadata__") return error("invalid tensor name");
    if (!seen.insert(t.name).second) return error("name appears twice");
    int64_t numel = 0;
    for (int64_t d : t.shape) {
      if (d < 0) return error(absl::StrCat("shape ", ShapeString(t.shape), " has a negative dim"));
    }
    uint64_t needed = 0;
    if (!CheckedNumElements(t.shape, &numel) ||
        __builtin_mul_overflow(static_cast<uint64_t>(numel), DTypeSize(t.dtype), &needed)) {
      return error(absl::StrCat("shape ", ShapeString(t.shape), " overflows"));
    }
    if (needed != t.num_bytes) {
      return error(absl::StrCat("num_bytes = ", t.num_bytes, " but dtype ", std::string(DTypeName(t.dtype)),
                                " x shape ", ShapeString(t.shape), " needs ", needed));
    }
    if (t.num_bytes > 0 && t.data == nullptr) return error("data is null");
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const void* data, uint64_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(size, 1ull << 30));
    ssize_t n = ::write(fd, p, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("cannot write", path, errno);
    }
    p += n;
    size -= static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

// Best effort: makes a rename durable. Failure is not an error (some file
// systems do not support fsync on folders).
void SyncFolder(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

bool IsShardName(const std::string& name) {
  // model-00001-of-00003.safetensors
  if (name.size() != 32 || name.compare(0, 6, "model-") != 0 || name.compare(11, 4, "-of-") != 0 ||
      name.compare(20, 12, ".safetensors") != 0) {
    return false;
  }
  for (size_t i : {6, 7, 8, 9, 10, 15, 16, 17, 18, 19}) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  return true;
}

absl::Status RemoveIfExists(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus("cannot remove stale file", path, errno);
  }
  return absl::OkStatus();
}

// Removes shard files in `model_dir` that are not in `keep`.
absl::Status RemoveStaleShards(const std::string& model_dir, const std::set<std::string>& keep) {
  DIR* dir = ::opendir(model_dir.c_str());
  if (dir == nullptr) return ErrnoStatus("cannot list folder", model_dir, errno);
  std::vector<std::string> stale;
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (IsShardName(name) && keep.count(name) == 0) stale.push_back(name);
  }
  ::closedir(dir);
  for (const std::string& name : stale) RETURN_IF_ERROR(RemoveIfExists(JoinPath(model_dir, name)));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DType> DTypeFromName(std::string_view name) {
  std::vector<std::string> names;
  for (const DTypeEntry& e : kDTypes) {
    if (name == e.name) return e.dtype;
    names.push_back(e.name);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", std::string(name),
                                                 "'; supported: ", absl::StrJoin(names, ", ")));
}

std::string_view DTypeName(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e.size;
  }
  return 0;
}

int64_t TensorInfo::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view file_bytes,
                                                         uint64_t file_size,
                                                         const std::string& source) {
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  if (file_size < 8 || file_bytes.size() < 8) {
    return error(absl::StrCat("file is ", std::min<uint64_t>(file_size, file_bytes.size()),
                              " bytes; a safetensors file starts with an 8-byte header length"));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file_bytes[i]);
  if (n > file_size - 8) {
    return error(absl::StrCat("header length ", n, " runs past the end of the ", file_size,
                              "-byte file (truncated or not a safetensors file)"));
  }
  if (n > kMaxHeaderBytes) {
    return error(absl::StrCat("header length ", n, " is larger than the ", kMaxHeaderBytes,
                              "-byte limit"));
  }
  if (file_bytes.size() - 8 < n) {
    return error(absl::StrCat("header length is ", n, " but only ", file_bytes.size() - 8,
                              " header bytes are available"));
  }
  std::string_view text = file_bytes.substr(8, n);
  Json root;
  try {
    root = Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    return error(absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return error(absl::StrCat("header must be a JSON object, found ", root.type_name()));
  }
  SafetensorsHeader header;
  header.data_offset = 8 + n;
  const uint64_t buffer_size = file_size - header.data_offset;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) {
        return error(absl::StrCat("__metadata__ = ", it->dump(),
                                  " must be an object of string values"));
      }
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return error(absl::StrCat("__metadata__ key '", m.key(), "' = ", m->dump(),
                                    " must be a string"));
        }
        header.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    TensorInfo info;
    RETURN_IF_ERROR(ParseTensorEntry(it.key(), *it, buffer_size, source, &info));
    header.tensors.push_back(std::move(info));
  }
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              if (a.begin != b.begin) return a.begin < b.begin;
              if (a.end != b.end) return a.end < b.end;
              return a.name < b.name;
            });
  for (size_t i = 1; i < header.tensors.size(); ++i) {
    const TensorInfo& prev = header.tensors[i - 1];
    const TensorInfo& cur = header.tensors[i];
    if (cur.begin < prev.end) {
      return error(absl::StrCat("tensor '", cur.name, "' data_offsets [", cur.begin, ", ",
                                cur.end, "] overlap tensor '", prev.name, "' [", prev.begin, ", ",
                                prev.end, "]; tensors must occupy disjoint byte ranges"));
    }
  }
  return header;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("cannot stat", path, err);
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > 0) {
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus("cannot mmap", path, err);
    }
    file->map_ = map;
    file->map_size_ = size;
  }
  ::close(fd);  // the mapping keeps the file alive
  std::string_view bytes(static_cast<const char*>(file->map_), file->map_size_);
  ASSIGN_OR_RETURN(file->header_, ParseSafetensorsHeader(bytes, size, path));
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  for (const TensorInfo& t : header_.tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const void* SafetensorsFile::Data(const TensorInfo& info) const {
  return static_cast<const char*>(map_) + header_.data_offset + info.begin;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorView>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  RETURN_IF_ERROR(ValidateViews(tensors, path));
  OrderedJson header = OrderedJson::object();
  if (!metadata.empty()) {
    OrderedJson meta = OrderedJson::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    OrderedJson entry;
    entry["dtype"] = std::string(DTypeName(t.dtype));
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + t.num_bytes};
    header[t.name] = std::move(entry);
    offset += t.num_bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);

  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("cannot create", tmp, errno);
  absl::Status status = WriteAll(fd, len, 8, tmp);
  if (status.ok()) status = WriteAll(fd, text.data(), text.size(), tmp);
  for (size_t i = 0; status.ok() && i < tensors.size(); ++i) {
    status = WriteAll(fd, tensors[i].data, tensors[i].num_bytes, tmp);
  }
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoStatus("cannot fsync", tmp, errno);
  if (::close(fd) != 0 && status.ok()) status = ErrnoStatus("cannot close", tmp, errno);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus("cannot rename into", path, errno);
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  SyncFolder(path);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& model_dir) {
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint());
  ckpt->model_dir_ = model_dir;
  const std::string index_path = JoinPath(model_dir, kIndexFile);
  const std::string single_path = JoinPath(model_dir, kSingleFile);
  if (!PathExists(index_path)) {
    if (!PathExists(single_path)) {
      return absl::NotFoundError(absl::StrCat("no weights in '", model_dir, "': neither ",
                                              kSingleFile, " nor ", kIndexFile, " exists"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single_path));
    for (const TensorInfo& t : file->tensors()) ckpt->index_[t.name] = Entry{file.get(), &t};
    ckpt->files_.push_back(std::move(file));
    return ckpt;
  }

  ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  Json index;
  try {
    index = Json::parse(text);
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": invalid JSON at byte ", e.byte, ": ", e.what()));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": expected an object with a 'weight_map' object "
                                 "(tensor name -> shard file)"));
  }
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map['", name,
                                                     "'] = ", shard.dump(),
                                                     " must be a shard file name"));
    }
    std::string shard_name = shard.get<std::string>();
    if (shard_name.empty() || shard_name.find('/') != std::string::npos || shard_name == "." ||
        shard_name == "..") {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map['", name, "'] = '",
                                                     shard_name,
                                                     "' must be a file name inside the folder"));
    }
    auto it = shards.find(shard_name);
    if (it == shards.end()) {
      std::string shard_path = JoinPath(model_dir, shard_name);
      if (!PathExists(shard_path)) {
        return absl::NotFoundError(absl::StrCat(index_path, " lists shard '", shard_name,
                                                "' (for tensor '", name, "'), which is missing"));
      }
      ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(shard_path));
      it = shards.emplace(shard_name, file.get()).first;
      ckpt->files_.push_back(std::move(file));
    }
    const TensorInfo* info = it->second->Find(name);
    if (info == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map puts tensor '",
                                                     name, "' in '", shard_name,
                                                     "', which does not contain it"));
    }
    ckpt->index_[name] = Entry{it->second, info};
  }
  return ckpt;
}

absl::StatusOr<SafetensorsCheckpoint::Entry> SafetensorsCheckpoint::Find(
    std::string_view name) const {
  auto it = index_.find(name);
  if (it != index_.end()) return it->second;
  std::vector<std::string> files;
  for (const auto& f : files_) files.push_back(f->path());
  return absl::NotFoundError(absl::StrCat("tensor '", std::string(name), "' not found in '",
                                          model_dir_, "' (searched ", absl::StrJoin(files, ", "),
                                          ")"));
}

std::vector<std::string> SafetensorsCheckpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, entry] : index_) names.push_back(name);
  return names;
}

absl::Status WriteSafetensorsCheckpoint(const std::string& model_dir,
                                        const std::vector<TensorView>& tensors,
                                        uint64_t max_shard_bytes,
                                        const std::map<std::string, std::string>& metadata) {
  RETURN_IF_ERROR(ValidateViews(tensors, model_dir));
  RETURN_IF_ERROR(MakeDirs(model_dir));
  const std::string index_path = JoinPath(model_dir, kIndexFile);
  uint64_t total = 0;
  for (const TensorView& t : tensors) total += t.num_bytes;

  if (total <= max_shard_bytes) {
    RETURN_IF_ERROR(WriteSafetensors(JoinPath(model_dir, kSingleFile), tensors, metadata));
    // The index would take precedence over the new file: remove it first.
    RETURN_IF_ERROR(RemoveIfExists(index_path));
    return RemoveStaleShards(model_dir, {});
  }

  // Greedy split in the given order; a tensor bigger than the limit gets a shard
  // of its own (as transformers does).
  std::vector<std::vector<TensorView>> groups;
  uint64_t current = 0;
  for (const TensorView& t : tensors) {
    if (groups.empty() || (!groups.back().empty() && current + t.num_bytes > max_shard_bytes)) {
      groups.emplace_back();
      current = 0;
    }
    groups.back().push_back(t);
    current += t.num_bytes;
  }
  // An old index may name files we are about to overwrite; drop it first so a
  // crash mid-save leaves no index pointing at a mix of old and new shards.
  RETURN_IF_ERROR(RemoveIfExists(index_path));
  OrderedJson weight_map = OrderedJson::object();
  std::set<std::string> names;
  for (size_t i = 0; i < groups.size(); ++i) {
    std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, groups.size());
    RETURN_IF_ERROR(WriteSafetensors(JoinPath(model_dir, name), groups[i], metadata));
    for (const TensorView& t : groups[i]) weight_map[t.name] = name;
    names.insert(name);
  }
  OrderedJson index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = std::move(weight_map);
  RETURN_IF_ERROR(WriteFileAtomically(index_path, index.dump(2) + "\n"));
  RETURN_IF_ERROR(RemoveIfExists(JoinPath(model_dir, kSingleFile)));
  return RemoveStaleShards(model_dir, names);
}

}  // namespace foak
