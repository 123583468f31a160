# frozen_string_literal: true

require_relative '../../domain_helper'

class NoRailsTest < Minitest::Test
  # Meaningful in its own process (test.sh runs the domain tests apart): if the domain pulled in Rails or
  # ActiveSupport, it could not be tested or reused outside Foreman.
  def test_the_domain_loads_without_rails_or_active_support
    assert_equal({ rails: nil, active_support: nil, active_record: nil }, DOMAIN_LOADED)
  end
end
