# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # Checks and normalises what the API and the form submit for a new
    # rollout, so both say the same thing about the same mistake. Returns
    # a Result with either clean attributes or messages per field.
    class Params
      Result = Struct.new(:attributes, :errors) do
        def ok?
          errors.empty?
        end
      end

      # A canary, then a twentieth, a quarter and everyone.
      DEFAULT_WAVES = '1, 5%, 25%, 100%'
      FIELDS = %w[name search flag_name flag_value waves failure_threshold wave_timeout promotion].freeze
      # Foreman allows nearly any parameter name; the bridge turns the flag
      # into FACTER_<NAME>, so only names that stay a shell variable work.
      FLAG_NAME = /\A[a-z_][a-z0-9_]{0,63}\z/i.freeze
      TRUE_WORDS = %w[true 1 yes on].freeze
      FALSE_WORDS = %w[false 0 no off].freeze

      # defaults: values from the plugin's settings for fields left out.
      def initialize(defaults = {})
        @defaults = { 'waves' => DEFAULT_WAVES }.merge(defaults.transform_keys(&:to_s))
      end

      # What a new form shows before anyone types: the defaults, checked.
      def form_defaults
        { name: '', search: '', flag_value: true, promotion: 'automatic' }.merge(
          @defaults.to_h { |field, value| [field.to_sym, send(:"check_#{field}", value)] }
        )
      end

      def call(raw)
        input = @defaults.merge(stringify(raw).compact)
        errors = {}
        unknown = stringify(raw).keys - FIELDS
        errors['base'] = ["unknown fields: #{unknown.sort.join(', ')}"] if unknown.any?
        attrs = FIELDS.each_with_object({}) do |field, out|
          out[field.to_sym] = send(:"check_#{field}", input[field])
        rescue InvalidError => e
          (errors[field] ||= []) << e.message
        end
        Result.new(errors.empty? ? attrs : nil, errors)
      end

      private

      def stringify(raw)
        raw.to_h.transform_keys(&:to_s)
      end

      def check_name(value)
        name = value.to_s.strip
        raise InvalidError, "can't be blank" if name.empty?
        raise InvalidError, 'is longer than 255 characters' if name.length > 255

        name
      end

      # The Foreman search is resolved when the rollout starts; an empty
      # one would mean every host, which is never what a canary is for.
      def check_search(value)
        search = value.to_s.strip
        raise InvalidError, "can't be blank (an empty search would select every host)" if search.empty?
        raise InvalidError, 'is longer than 4096 characters' if search.length > 4096

        search
      end

      def check_flag_name(value)
        name = value.to_s.strip
        return name if FLAG_NAME.match?(name)

        raise InvalidError, "#{name.inspect} must be letters, digits and _ (it becomes FACTER_#{name.upcase})"
      end

      def check_flag_value(value)
        return value if [true, false].include?(value)

        word = value.to_s.strip.downcase
        return true if value.nil? || word.empty? || TRUE_WORDS.include?(word)
        return false if FALSE_WORDS.include?(word)

        raise InvalidError, "#{value.inspect} is not a boolean"
      end

      def check_waves(value)
        WaveSpec.parse(value.is_a?(Array) ? value.join(',') : value).to_s
      end

      def check_failure_threshold(value)
        Gate.new(value)
        Integer(value)
      end

      def check_wave_timeout(value)
        WaveTimeout.new(value).secs
      end

      def check_promotion(value)
        Promotion.new(value.nil? ? 'automatic' : value).mode
      end
    end
  end
end
