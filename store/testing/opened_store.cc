// Copyright 2026 The Cairn Authors.

#include "store/testing/opened_store.h"

#include <utility>

namespace cairn::testing {

absl::StatusOr<OpenedStore> OpenStoreWithRefs(const std::string& data_dir) {
  StoreOptions options;
  options.data_dir = data_dir;
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options);
  if (!store.ok()) return store.status();
  OpenedStore opened;
  opened.store = *std::move(store);
  absl::StatusOr<std::unique_ptr<RefStore>> refs =
      RefStore::Create(&opened.store->mutable_metadata());
  if (!refs.ok()) return refs.status();
  opened.refs = *std::move(refs);
  return opened;
}

}  // namespace cairn::testing
