// Aligned text tables in the style of `kubectl get`: an upper-case header,
// left-aligned columns separated by three spaces, no borders, so the output
// reads well and still splits on whitespace in scripts (empty cells print "-").
#ifndef FOAK_CLIENT_TABLE_WRITER_H_
#define FOAK_CLIENT_TABLE_WRITER_H_

#include <ostream>
#include <string>
#include <vector>

namespace foak::client {

class TableWriter {
 public:
  explicit TableWriter(std::vector<std::string> header);

  // Adds a row; missing cells are empty, extra cells are an error in the
  // caller and are dropped.
  void AddRow(std::vector<std::string> row);

  // Writes the header and the rows. The last column is not padded.
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace foak::client

#endif  // FOAK_CLIENT_TABLE_WRITER_H_
