// Fuzzes the safetensors header parser (worker/model/safetensors.h), which
// reads the first bytes of every weight file a user points foak at.
//
// The input is a whole file: 8-byte little-endian header length, JSON header,
// data buffer. It is parsed three ways, as the reader can meet it: all bytes
// present; only a prefix read so far (file_size larger than the bytes); and
// through SafetensorsFile::Open, which memory-maps a real file. On success the
// tensors' byte ranges must lie inside the data buffer, be disjoint, sorted,
// and hold exactly dtype size x elements; the first and last byte of every
// tensor is read through the mapping, so a range past the end shows up as
// ASan/SIGBUS rather than as a wrong number.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "worker/model/safetensors.h"

namespace {

void CheckHeader(const foak::SafetensorsHeader& header, uint64_t file_size) {
  FUZZ_CHECK(header.data_offset >= 8 && header.data_offset <= file_size);
  const uint64_t buffer = file_size - header.data_offset;
  for (size_t i = 0; i < header.tensors.size(); ++i) {
    const foak::TensorInfo& t = header.tensors[i];
    FUZZ_CHECK(t.begin <= t.end && t.end <= buffer);
    FUZZ_CHECK(t.NumBytes() ==
               static_cast<uint64_t>(t.NumElements()) * foak::DTypeSize(t.dtype));
    if (i > 0) FUZZ_CHECK(header.tensors[i - 1].end <= t.begin);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes = foak::fuzz::AsText(data, size);
  absl::StatusOr<foak::SafetensorsHeader> whole =
      foak::ParseSafetensorsHeader(bytes, size, "fuzz.safetensors");
  foak::fuzz::Explain("ParseSafetensorsHeader", whole.status());
  if (whole.ok()) CheckHeader(*whole, size);

  // A prefix, as when the header is parsed from a first read of a larger file.
  const uint64_t claimed = static_cast<uint64_t>(size) * 2 + 16;
  absl::StatusOr<foak::SafetensorsHeader> prefix =
      foak::ParseSafetensorsHeader(bytes, claimed, "fuzz.safetensors");
  if (prefix.ok()) CheckHeader(*prefix, claimed);

  const std::string path = foak::fuzz::WriteScratchFile("model.safetensors", bytes);
  absl::StatusOr<std::unique_ptr<foak::SafetensorsFile>> file = foak::SafetensorsFile::Open(path);
  FUZZ_CHECK(file.ok() == whole.ok());
  if (file.ok()) {
    unsigned checksum = 0;
    for (const foak::TensorInfo& t : (*file)->tensors()) {
      FUZZ_CHECK((*file)->Find(t.name) != nullptr);
      if (t.NumBytes() == 0) continue;
      const auto* p = static_cast<const unsigned char*>((*file)->Data(t));
      checksum += p[0] + p[t.NumBytes() - 1];
    }
    // Keeps the reads above from being optimized away.
    if (checksum == 0xFFFFFFFFu) std::fputc('\n', stderr);
  }
  return 0;
}
