# frozen_string_literal: true

# Foreman's models share this base class; the plugin's do too.
class ApplicationRecord < ActiveRecord::Base
  self.abstract_class = true
end
