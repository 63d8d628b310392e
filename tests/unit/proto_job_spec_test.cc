// The worker's JSON job file and foak.v1.JobSpec describe jobs with the same
// field names: every committed example job parses as a JobSpec with protobuf's
// JSON mapping, and a misspelt field is rejected by name.
#include <string>

#include "common/file_util.h"
#include "foak/v1/job.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace foak {
namespace {

TEST(ProtoJobSpec, DemoJobParses) {
  auto text = ReadFileToString(std::string(FOAK_SOURCE_DIR) + "/examples/demo_job.json");
  ASSERT_TRUE(text.ok()) << text.status();
  foak::v1::JobSpec spec;
  auto st = google::protobuf::util::JsonStringToMessage(*text, &spec);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(spec.model().empty());
  EXPECT_FALSE(spec.dataset().train().empty());
  EXPECT_TRUE(spec.hyperparameters().has_learning_rate());
  EXPECT_GT(spec.hyperparameters().learning_rate(), 0.0);
}

TEST(ProtoJobSpec, UnknownFieldIsRejectedByName) {
  foak::v1::JobSpec spec;
  auto st = google::protobuf::util::JsonStringToMessage(
      R"({"model": "m", "hyperparameters": {"learning_rat": 0.1}})", &spec);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("learning_rat"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace foak
