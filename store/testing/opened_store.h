// Copyright 2026 The Cairn Authors.
//
// A Store and its RefStore, opened together for tests.

#ifndef CAIRN_STORE_TESTING_OPENED_STORE_H_
#define CAIRN_STORE_TESTING_OPENED_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/refs.h"
#include "store/store.h"

namespace cairn::testing {

// A Store opened with default StoreOptions on a data directory, and a
// RefStore over its metadata. `refs` borrows `store`: destroy `refs` first
// (members are destroyed in reverse order, so a default-destroyed
// OpenedStore does).
struct OpenedStore {
  std::unique_ptr<Store> store;
  std::unique_ptr<RefStore> refs;
};

// Opens `data_dir` (created if absent) as Store::Open and RefStore::Create
// do; returns the first error either returns.
absl::StatusOr<OpenedStore> OpenStoreWithRefs(const std::string& data_dir);

}  // namespace cairn::testing

#endif  // CAIRN_STORE_TESTING_OPENED_STORE_H_
