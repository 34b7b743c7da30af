# frozen_string_literal: true

# One row per step of a shop/ledger task (db/schema.rb).
class LedgerEntry < ApplicationRecord
end
