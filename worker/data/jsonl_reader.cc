#include "worker/data/jsonl_reader.h"

#include <cerrno>
#include <cstdlib>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "nlohmann/json.hpp"

namespace foak {
namespace {

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

absl::StatusOr<std::unique_ptr<JsonlTextReader>> JsonlTextReader::Open(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rbe");
  if (file == nullptr) return ErrnoStatus("cannot open dataset", path, errno);
  return std::unique_ptr<JsonlTextReader>(new JsonlTextReader(path, file));
}

JsonlTextReader::~JsonlTextReader() {
  std::fclose(file_);
  std::free(line_buf_);
}

absl::Status JsonlTextReader::Rewind() {
  if (std::fseek(file_, 0, SEEK_SET) != 0) return ErrnoStatus("cannot rewind", path_, errno);
  std::clearerr(file_);
  line_number_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<bool> JsonlTextReader::Next(std::string* text) {
  while (true) {
    errno = 0;
    ssize_t n = ::getline(&line_buf_, &line_cap_, file_);
    if (n < 0) {
      if (std::ferror(file_)) return ErrnoStatus("cannot read", path_, errno);
      return false;
    }
    ++line_number_;
    std::string_view line(line_buf_, static_cast<size_t>(n));
    while (!line.empty() && IsJsonSpace(line.back())) line.remove_suffix(1);
    while (!line.empty() && IsJsonSpace(line.front())) line.remove_prefix(1);
    if (line.empty()) continue;
    const std::string where = absl::StrCat(path_, ":", line_number_, ": ");
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "invalid JSON (", e.what(),
          "); each line must be an object like {\"text\": \"...\"}"));
    }
    if (!value.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "expected a JSON object like {\"text\": \"...\"}, got ", value.type_name()));
    }
    auto it = value.find("text");
    if (it == value.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "missing field \"text\"; each line must look like {\"text\": \"...\"}"));
    }
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "field \"text\" must be a string, got ", it->type_name()));
    }
    *text = it->get<std::string>();
    return true;
  }
}

}  // namespace foak
