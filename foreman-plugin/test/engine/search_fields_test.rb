# frozen_string_literal: true

require 'test_helper'

# scoped_search (Foreman only, absent from the dummy app) answers 400
# "not valid field for search" when a list is ordered by a field the model
# did not declare; the API orders rollouts by id unless told otherwise.
class SearchFieldsTest < ActiveSupport::TestCase
  ROOT = ForemanPvc::Engine.root

  def declared
    File.read(ROOT.join('app/models/foreman_pvc/staged_rollout.rb')).scan(/scoped_search on: :(\w+)/).flatten
  end

  def default_orders
    Dir[ROOT.join('app/controllers/**/*.rb').to_s].flat_map do |file|
      File.read(file).scan(/order: params\[:order\] \|\| '([^']+)'/).flatten
    end
  end

  test 'the API has a default order' do
    refute_empty default_orders
  end

  test 'every field a list is ordered by by default is a search field' do
    default_orders.each do |order|
      order.split(',').each do |term|
        field = term.strip.split.first
        assert_includes declared, field, "order #{order.inspect}"
        assert_includes ForemanPvc::StagedRollout.column_names, field
      end
    end
  end
end
