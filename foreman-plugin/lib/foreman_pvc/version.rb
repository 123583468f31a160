# frozen_string_literal: true

module ForemanPvc
  VERSION = '0.1.0'
end
