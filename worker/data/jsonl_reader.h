// JsonlTextReader: streams the "text" field out of a JSONL file one line at a
// time, so a dataset far larger than RAM can be read (only the current line is
// held). Every error names "<file>:<line>:" and what was wrong, e.g.
//   data.jsonl:17: invalid JSON (...); each line must be an object like {"text": "..."}
//   data.jsonl:18: field "text" must be a string, got number
// Blank lines (only whitespace) are skipped, so a trailing newline or an empty
// last line is harmless. Keys other than "text" are ignored. A CRLF line end
// is accepted.
#ifndef FOAK_WORKER_DATA_JSONL_READER_H_
#define FOAK_WORKER_DATA_JSONL_READER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace foak {

class JsonlTextReader {
 public:
  static absl::StatusOr<std::unique_ptr<JsonlTextReader>> Open(const std::string& path);
  ~JsonlTextReader();
  JsonlTextReader(const JsonlTextReader&) = delete;
  JsonlTextReader& operator=(const JsonlTextReader&) = delete;

  // Sets *text to the next example's text and returns true; false at the end
  // of the file; an error (naming file and line) for a bad line.
  absl::StatusOr<bool> Next(std::string* text);
  // Goes back to the first line.
  absl::Status Rewind();

  const std::string& path() const { return path_; }
  // 1-based line of the example last returned by Next (0 before the first).
  int64_t line_number() const { return line_number_; }

 private:
  JsonlTextReader(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  std::string path_;
  std::FILE* file_;
  char* line_buf_ = nullptr;  // getline(3)'s buffer, reused across lines
  size_t line_cap_ = 0;
  int64_t line_number_ = 0;
};

}  // namespace foak

#endif  // FOAK_WORKER_DATA_JSONL_READER_H_
