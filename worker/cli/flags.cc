// The flag parser of foak-worker and the shared value parsers (see flags.h).
#include "worker/cli/flags.h"

#include <cmath>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace foak {

absl::StatusOr<Flags> ParseFlags(int argc, char** argv, int first,
                                 const std::set<std::string>& known,
                                 const std::set<std::string>& switches) {
  Flags flags;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      flags.help = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2);
    std::string value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      if (switches.count(name) != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " takes no value; write --", name, " alone"));
      }
    } else if (switches.count(name) != 0) {
      value = "true";
    } else {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
      value = argv[++i];
    }
    if (known.count(name) == 0 && switches.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
    }
    if (flags.values.count(name) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given twice"));
    }
    flags.values[name] = value;
  }
  return flags;
}

absl::Status Require(const Flags& flags, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (flags.Get(name).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseDtype(const Flags& flags) {
  std::string dtype = flags.Get("dtype", "float32");
  if (dtype != "float32" && dtype != "bfloat16") {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype ", dtype, ": expected float32 or bfloat16"));
  }
  return dtype;
}

absl::StatusOr<std::vector<std::vector<int64_t>>> ParseIdRows(const std::string& flag,
                                                              const std::string& text) {
  std::vector<std::vector<int64_t>> rows;
  for (absl::string_view row_text : absl::StrSplit(text, ';')) {
    std::vector<int64_t> row;
    for (absl::string_view item : absl::StrSplit(row_text, ',')) {
      int64_t id;
      if (!absl::SimpleAtoi(item, &id)) {
        return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", std::string(item),
                                                       "' is not an integer; expected ids like "
                                                       "1,2,3;4,5,6"));
      }
      row.push_back(id);
    }
    if (!rows.empty() && row.size() != rows[0].size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": row ", rows.size(), " has ", row.size(),
                       " ids but row 0 has ", rows[0].size(), "; rows must be equally long"));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<int64_t> ParseIntFlag(const Flags& flags, const std::string& name, int64_t fallback,
                                     int64_t min_value) {
  if (!flags.Has(name)) return fallback;
  const std::string text = flags.Get(name);
  int64_t value;
  if (!absl::SimpleAtoi(text, &value) || value < min_value) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " ", text, ": expected an integer >= ", min_value));
  }
  return value;
}

absl::StatusOr<double> ParseDoubleFlag(const Flags& flags, const std::string& name, double fallback,
                                       bool (*valid)(double), const char* expected) {
  if (!flags.Has(name)) return fallback;
  const std::string text = flags.Get(name);
  double value;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value) || !valid(value)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " ", text, ": expected ", expected));
  }
  return value;
}

}  // namespace foak
