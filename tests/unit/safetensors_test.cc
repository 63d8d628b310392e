// safetensors: round trips over every dtype (scalar and zero-size tensors too),
// a byte-exact file built by hand from the format spec (so the writer and the
// reader agree with the format, not only with each other), one test per
// header corruption (each error must name the file and the tensor), and the
// sharded checkpoint layout incl. cleanup of stale files from another layout.
#include "worker/model/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace foak {
namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/safetensors_test_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_TRUE(RemoveTree(dir_).ok());
    ASSERT_TRUE(MakeDirs(dir_).ok());
  }
  void TearDown() override { EXPECT_TRUE(RemoveTree(dir_).ok()); }

  std::string Path(const std::string& name) const { return JoinPath(dir_, name); }

  std::vector<std::string> Files() const {
    absl::StatusOr<std::vector<std::string>> names = ListDir(dir_);
    EXPECT_TRUE(names.ok()) << names.status();
    return names.ok() ? *names : std::vector<std::string>{};
  }

  std::string dir_;
};

// 8-byte little-endian length + header + data, as the spec lays it out.
std::string RawFile(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

// Opens `bytes` written to `path`; expects failure whose message contains all needles.
void ExpectOpenError(const std::string& path, const std::string& bytes,
                     std::initializer_list<std::string> needles) {
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok()) << "opened unexpectedly";
  std::string msg(f.status().message());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << msg;
}

TEST(DTypeTest, NamesAndSizes) {
  EXPECT_EQ(*DTypeFromName("BF16"), DType::kBF16);
  EXPECT_EQ(DTypeName(DType::kBool), "BOOL");
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kU8), 1u);
  absl::StatusOr<DType> bad = DTypeFromName("F99");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'F99'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("BF16"), std::string::npos);
}

TEST_F(SafetensorsTest, RoundTripDtypesShapesScalarAndEmpty) {
  std::vector<float> f32(6);
  std::iota(f32.begin(), f32.end(), -2.5f);
  std::vector<uint16_t> bf16 = {0x3f80, 0x4000, 0xbf80, 0x7f80};
  std::vector<double> f64 = {3.25};
  int64_t scalar = -1234567890123;
  std::vector<int32_t> i32 = {1, -2, 3};
  std::vector<int8_t> i8 = {-128, 127};
  std::vector<uint8_t> boolean = {1, 0, 1};
  std::vector<uint16_t> f16 = {0x3c00, 0xc000};
  std::vector<int16_t> i16 = {-7};
  std::vector<TensorView> views = {
      {"model.layers.0.weight", DType::kF32, {2, 3}, f32.data(), 24},
      {"bf16", DType::kBF16, {4}, bf16.data(), 8},
      {"empty", DType::kU8, {0, 5}, nullptr, 0},
      {"f64", DType::kF64, {1}, f64.data(), 8},
      {"scalar", DType::kI64, {}, &scalar, 8},
      {"i32", DType::kI32, {3, 1}, i32.data(), 12},
      {"i8", DType::kI8, {2}, i8.data(), 2},
      {"bool", DType::kBool, {3}, boolean.data(), 3},
      {"f16", DType::kF16, {1, 1, 2}, f16.data(), 4},
      {"i16", DType::kI16, {1}, i16.data(), 2},
  };
  std::string path = Path("m.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, views, {{"format", "pt"}, {"step", "7"}}).ok());
  EXPECT_EQ(Files(), std::vector<std::string>{"m.safetensors"});  // no temp left behind

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("step"), "7");
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  ASSERT_EQ((*f)->tensors().size(), views.size());
  for (size_t i = 1; i < (*f)->tensors().size(); ++i) {
    EXPECT_LE((*f)->tensors()[i - 1].begin, (*f)->tensors()[i].begin);
  }
  for (const TensorView& v : views) {
    SCOPED_TRACE(v.name);
    const TensorInfo* info = (*f)->Find(v.name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, v.dtype);
    EXPECT_EQ(info->shape, v.shape);
    EXPECT_EQ(info->NumBytes(), v.num_bytes);
    EXPECT_EQ(static_cast<uint64_t>(info->NumElements()) * DTypeSize(v.dtype), v.num_bytes);
    if (v.num_bytes > 0) {
      EXPECT_EQ(Bytes((*f)->Data(*info), v.num_bytes), Bytes(v.data, v.num_bytes));
    }
  }
  EXPECT_EQ((*f)->Find("scalar")->NumElements(), 1);
  EXPECT_EQ((*f)->Find("empty")->NumElements(), 0);
  EXPECT_EQ((*f)->Find("absent"), nullptr);
}

TEST_F(SafetensorsTest, WriterMatchesTheSpecByteForByte) {
  float w[2] = {1.0f, -2.0f};  // 0x3f800000, 0xc0000000 little-endian
  uint8_t s = 7;
  ASSERT_TRUE(WriteSafetensors(Path("a.safetensors"),
                               {{"w1", DType::kF32, {2}, w, 8}, {"s", DType::kU8, {}, &s, 1}},
                               {{"format", "pt"}})
                  .ok());
  // 137 bytes of compact JSON, tensors in the given order, metadata first,
  // padded with 7 spaces to 144 (a multiple of 8).
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"w1":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("s":{"dtype":"U8","shape":[],"data_offsets":[8,9]}})";
  ASSERT_EQ(json.size(), 137u);
  std::string expected("\x90\0\0\0\0\0\0\0", 8);  // 144, little-endian
  expected += json + "       ";
  expected += std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0\x07", 9);
  absl::StatusOr<std::string> written = ReadFileToString(Path("a.safetensors"));
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(*written, expected);
}

TEST_F(SafetensorsTest, ReadsAHandWrittenFile) {
  // Keys in another order, whitespace, no padding, offsets not in header order,
  // and the data laid out with the second tensor first.
  std::string header =
      R"({ "b" : {"data_offsets": [0, 2], "shape": [1], "dtype": "BF16"},)"
      R"( "a": {"shape": [2, 1], "dtype": "I16", "data_offsets": [2, 6]} })";
  std::string data("\x80\x3f\x01\x00\xff\xff", 6);
  std::string path = Path("hand.safetensors");
  ASSERT_TRUE(WriteFileAtomically(path, RawFile(header, data)).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->metadata().empty());
  ASSERT_EQ((*f)->tensors().size(), 2u);
  EXPECT_EQ((*f)->tensors()[0].name, "b");  // sorted by begin
  const TensorInfo* a = (*f)->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kI16);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 1}));
  int16_t values[2];
  std::memcpy(values, (*f)->Data(*a), 4);
  EXPECT_EQ(values[0], 1);
  EXPECT_EQ(values[1], -1);
  EXPECT_EQ(Bytes((*f)->Data(*(*f)->Find("b")), 2), std::string("\x80\x3f", 2));
}

TEST_F(SafetensorsTest, EmptyFileAndNoTensors) {
  ExpectOpenError(Path("zero.safetensors"), "", {"0 bytes", "8-byte header length"});
  ASSERT_TRUE(WriteSafetensors(Path("none.safetensors"), {}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(Path("none.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->tensors().empty());
}

TEST_F(SafetensorsTest, TruncatedFilesAreRejected) {
  std::vector<float> x(16, 1.5f);
  std::string good_path = Path("good.safetensors");
  ASSERT_TRUE(WriteSafetensors(good_path, {{"model.norm.weight", DType::kF32, {16}, x.data(), 64}})
                  .ok());
  std::string good = *ReadFileToString(good_path);
  std::string path = Path("cut.safetensors");
  ExpectOpenError(path, good.substr(0, 5), {"5 bytes"});
  ExpectOpenError(path, good.substr(0, 8), {"header length", "past the end"});
  ExpectOpenError(path, good.substr(0, 30), {"header length", "past the end"});
  // Cut inside the data buffer: the header is intact, the tensor's end is not.
  ExpectOpenError(path, good.substr(0, good.size() - 1),
                  {"tensor 'model.norm.weight'", "data_offsets [0, 64]", "63 bytes"});
  ExpectOpenError(path, good.substr(0, good.size() - 40), {"model.norm.weight"});
  EXPECT_TRUE(SafetensorsFile::Open(good_path).ok());
}

TEST_F(SafetensorsTest, CorruptHeadersAreRejected) {
  const std::string path = Path("bad.safetensors");
  const std::string data(256, '\0');
  auto one = [](const std::string& entry) { return absl::StrCat(R"({"t": )", entry, "}"); };

  // Header length past EOF.
  std::string bad_len = RawFile(one(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})"), "x");
  bad_len[0] = static_cast<char>(0xff);
  ExpectOpenError(path, bad_len, {"header length 255", "past the end"});
  ExpectOpenError(path, RawFile("{\"t\": {\"dtype\": ", ""), {"not valid JSON"});
  ExpectOpenError(path, RawFile("[1, 2]", ""), {"JSON object", "array"});
  ExpectOpenError(path, RawFile(one("[0, 4]"), data), {"tensor 't'", "must be an object"});
  ExpectOpenError(path, RawFile(one(R"({"dtype":"F32","shape":[1]})"), data),
                  {"tensor 't'", "missing 'data_offsets'"});
  ExpectOpenError(path, RawFile(one(R"({"shape":[1],"data_offsets":[0,4]})"), data),
                  {"tensor 't'", "missing 'dtype'"});
  ExpectOpenError(path, RawFile(one(R"({"dtype":"F32","data_offsets":[0,4]})"), data),
                  {"tensor 't'", "missing 'shape'"});
  ExpectOpenError(path, RawFile(one(R"({"dtype":"F99","shape":[1],"data_offsets":[0,4]})"), data),
                  {"tensor 't'", "unknown dtype 'F99'", "F32", "BF16", "BOOL"});
  ExpectOpenError(path, RawFile(one(R"({"dtype":"F32","shape":[2,-3],"data_offsets":[0,4]})"), data),
                  {"tensor 't'", "-3", "non-negative"});
  ExpectOpenError(path, RawFile(one(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})"), data),
                  {"tensor 't'", "1.5"});
  ExpectOpenError(
      path,
      RawFile(one(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})"), data),
      {"tensor 't'", "64 bits"});
  ExpectOpenError(path, RawFile(one(R"({"dtype":"F32","shape":[64],"data_offsets":[0,200]})"), data),
                  {"tensor 't'", "data_offsets [0, 200] hold 200 bytes but dtype F32 x shape [64] needs 256"});
  ExpectOpenError(path, RawFile(one(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), data),
                  {"tensor 't'", "begin is after end"});
  ExpectOpenError(path, RawFile(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), data),
                  {"tensor 't'", "data_offsets"});
  ExpectOpenError(path, RawFile(one(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), data),
                  {"tensor 't'", "data_offsets"});
  // Offsets beyond the file.
  ExpectOpenError(path, RawFile(one(R"({"dtype":"U8","shape":[8],"data_offsets":[252,260]})"), data),
                  {"tensor 't'", "[252, 260]", "256 bytes"});
  // Overlap (listed out of order so the check must sort first).
  ExpectOpenError(path,
                  RawFile(R"({"late": {"dtype":"F32","shape":[2],"data_offsets":[12,20]},)"
                          R"( "early": {"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                          data),
                  {"'late'", "'early'", "overlap"});
  ExpectOpenError(path, RawFile(R"({"__metadata__": {"format": 1}})", ""),
                  {"__metadata__", "format", "string"});
  ExpectOpenError(path, RawFile(R"({"__metadata__": ["pt"]})", ""), {"__metadata__", "object"});
  // A zero-size tensor may sit at the boundary of a neighbour ...
  ASSERT_TRUE(WriteFileAtomically(
                  path, RawFile(R"({"e": {"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                                R"( "f": {"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                std::string(8, '\0')))
                  .ok());
  EXPECT_TRUE(SafetensorsFile::Open(path).ok());
  // ... but not inside it (the reference reader rejects that too).
  ExpectOpenError(path,
                  RawFile(R"({"e": {"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                          R"( "f": {"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                          std::string(8, '\0')),
                  {"'e'", "'f'", "overlap"});
}

TEST(SafetensorsHeaderTest, AbsurdHeaderLengthAndShortPrefix) {
  std::string prefix("\x00\x00\x00\x40\x00\x00\x00\x00", 8);  // 1 GiB header
  absl::StatusOr<SafetensorsHeader> h =
      ParseSafetensorsHeader(prefix, uint64_t{1} << 40, "huge.safetensors");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("huge.safetensors"), std::string::npos);
  EXPECT_NE(h.status().message().find("1073741824"), std::string::npos);
  EXPECT_NE(h.status().message().find("limit"), std::string::npos);
  // A plausible length but a prefix that does not hold the whole header.
  std::string small("\x20\x00\x00\x00\x00\x00\x00\x00{\"a\"", 12);
  h = ParseSafetensorsHeader(small, 1000, "p.safetensors");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("only 4"), std::string::npos) << h.status();
}

TEST_F(SafetensorsTest, WriterRejectsInconsistentViews) {
  float x[4] = {};
  absl::Status s = WriteSafetensors(Path("w.safetensors"), {{"x", DType::kF32, {4}, x, 12}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'x'"), std::string::npos);
  EXPECT_NE(s.message().find("needs 16"), std::string::npos);
  s = WriteSafetensors(Path("w.safetensors"),
                       {{"x", DType::kF32, {4}, x, 16}, {"x", DType::kF32, {4}, x, 16}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("twice"), std::string::npos);
  EXPECT_TRUE(Files().empty());
}

// Five 40-byte tensors with distinct contents.
struct FiveTensors {
  FiveTensors() {
    for (int i = 0; i < 5; ++i) {
      data[i].assign(10, static_cast<float>(i) + 0.5f);
      views.push_back({absl::StrCat("model.layers.", i, ".w"), DType::kF32, {2, 5},
                       data[i].data(), 40});
    }
  }
  std::vector<float> data[5];
  std::vector<TensorView> views;
};

void ExpectCheckpointHolds(const std::string& dir, const FiveTensors& t) {
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  std::vector<std::string> names = (*ckpt)->TensorNames();
  ASSERT_EQ(names.size(), 5u);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const TensorView& v : t.views) {
    absl::StatusOr<SafetensorsCheckpoint::Entry> e = (*ckpt)->Find(v.name);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->info->shape, v.shape);
    EXPECT_EQ(Bytes(e->file->Data(*e->info), 40), Bytes(v.data, 40));
  }
  absl::StatusOr<SafetensorsCheckpoint::Entry> missing = (*ckpt)->Find("lm_head.weight");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("lm_head.weight"), std::string::npos);
}

TEST_F(SafetensorsTest, ShardedCheckpointAndLayoutChanges) {
  FiveTensors t;
  // 100-byte shards: greedy in order gives {0,1} {2,3} {4}.
  ASSERT_TRUE(WriteSafetensorsCheckpoint(dir_, t.views, 100).ok());
  EXPECT_EQ(Files(), (std::vector<std::string>{"model-00001-of-00003.safetensors",
                                               "model-00002-of-00003.safetensors",
                                               "model-00003-of-00003.safetensors",
                                               "model.safetensors.index.json"}));
  std::string index = *ReadFileToString(Path("model.safetensors.index.json"));
  EXPECT_NE(index.find("\"total_size\": 200"), std::string::npos) << index;
  EXPECT_NE(index.find("\"model.layers.3.w\": \"model-00002-of-00003.safetensors\""),
            std::string::npos)
      << index;
  EXPECT_NE(index.find("\"model.layers.4.w\": \"model-00003-of-00003.safetensors\""),
            std::string::npos)
      << index;
  auto shard = SafetensorsFile::Open(Path("model-00001-of-00003.safetensors"));
  ASSERT_TRUE(shard.ok());
  EXPECT_EQ((*shard)->tensors().size(), 2u);
  EXPECT_EQ((*shard)->metadata().at("format"), "pt");
  ExpectCheckpointHolds(dir_, t);

  // Re-shard into two files: the third old shard goes.
  ASSERT_TRUE(WriteSafetensorsCheckpoint(dir_, t.views, 120).ok());
  EXPECT_EQ(Files(), (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                               "model-00002-of-00002.safetensors",
                                               "model.safetensors.index.json"}));
  ExpectCheckpointHolds(dir_, t);

  // Single file into the same folder: shards and index are removed.
  ASSERT_TRUE(WriteFileAtomically(Path("config.json"), "{}").ok());
  ASSERT_TRUE(WriteSafetensorsCheckpoint(dir_, t.views, 1000).ok());
  EXPECT_EQ(Files(), (std::vector<std::string>{"config.json", "model.safetensors"}));
  ExpectCheckpointHolds(dir_, t);

  // And back to shards: the single file is removed.
  ASSERT_TRUE(WriteSafetensorsCheckpoint(dir_, t.views, 40).ok());
  EXPECT_EQ(Files().size(), 7u);  // 5 shards + index + config.json
  EXPECT_FALSE(PathExists(Path("model.safetensors")));
  EXPECT_TRUE(PathExists(Path("model-00005-of-00005.safetensors")));
  ExpectCheckpointHolds(dir_, t);
}

TEST_F(SafetensorsTest, CheckpointErrors) {
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt = SafetensorsCheckpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(ckpt.status().message().find(dir_), std::string::npos);
  EXPECT_NE(ckpt.status().message().find("model.safetensors.index.json"), std::string::npos);
  EXPECT_NE(ckpt.status().message().find("model.safetensors "), std::string::npos);

  FiveTensors t;
  ASSERT_TRUE(WriteSafetensorsCheckpoint(dir_, t.views, 100).ok());
  ASSERT_EQ(::unlink(Path("model-00002-of-00003.safetensors").c_str()), 0);
  ckpt = SafetensorsCheckpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(ckpt.status().message().find("model-00002-of-00003.safetensors"), std::string::npos)
      << ckpt.status();

  // The index puts a tensor into a shard that does not hold it.
  ASSERT_TRUE(WriteSafetensorsCheckpoint(dir_, t.views, 100).ok());
  std::string index = *ReadFileToString(Path("model.safetensors.index.json"));
  std::string from = "\"model.layers.4.w\": \"model-00003-of-00003.safetensors\"";
  size_t pos = index.find(from);
  ASSERT_NE(pos, std::string::npos);
  index.replace(pos, from.size(), "\"model.layers.4.w\": \"model-00001-of-00003.safetensors\"");
  ASSERT_TRUE(WriteFileAtomically(Path("model.safetensors.index.json"), index).ok());
  ckpt = SafetensorsCheckpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_NE(ckpt.status().message().find("model.layers.4.w"), std::string::npos);
  EXPECT_NE(ckpt.status().message().find("model-00001-of-00003.safetensors"), std::string::npos);

  // Index that escapes the folder or is not JSON.
  ASSERT_TRUE(WriteFileAtomically(Path("model.safetensors.index.json"),
                                  R"({"weight_map": {"a": "../x.safetensors"}})")
                  .ok());
  EXPECT_FALSE(SafetensorsCheckpoint::Open(dir_).ok());
  ASSERT_TRUE(WriteFileAtomically(Path("model.safetensors.index.json"), "{").ok());
  ckpt = SafetensorsCheckpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_NE(ckpt.status().message().find("model.safetensors.index.json"), std::string::npos);
}

}  // namespace
}  // namespace foak
